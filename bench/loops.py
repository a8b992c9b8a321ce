#!/usr/bin/env python3
"""Benchmark: mail loops and backscatter, counted in mails rather than seconds.

In-process against the real store (SQLite in a temp directory), the real
ingest path (``postdesk.ingest.ingest``: parse, decide, record) and the real
notifier (``Worker`` with its policy and compose), with an injected clock;
only the SMTP hop is replaced by a collector that keeps each composed mail.

loops       Two customers on one ticket (the requester and her Cc) whose
            auto-responders set no RFC 3834 headers: every mail the desk
            sends either of them is answered within seconds by a plain
            "Re:" reply (In-Reply-To our Message-ID, no Auto-Submitted),
            ingested as any customer reply is.  A staff reply starts it.
            Each round moves the clock to the next due update and runs a
            notifier pass; the figure is mails out to the customers per
            round, until a round sends none (converged) or --rounds pass.
            Shown twice in the same run: the desk as configured, and as a
            baseline the same desk without the filter's auto-responder
            timing rule (``rules.automatic.AUTO_SECONDS``; the notifier's
            rate caps only), whose loop runs until the cap holds it.

backscatter A burst of N new-ticket mails from N forged senders (one each),
            and a burst of N from plus-address variants of one sender
            (jane+1@, jane+2@, ...), in one window.  The figures are
            acknowledgements sent in all and per forged sender.  Run with
            ``[trust] ack_unauthenticated = true`` and verification off: the
            worst case, where every burst mail is eligible for an
            acknowledgement and only the notifier's caps stand between the
            burst and the Internet.

    .venv/bin/python bench/loops.py                  # a few seconds
    .venv/bin/python bench/loops.py --senders 1000 --rounds 40
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postdesk import config as configmod  # noqa: E402
from postdesk.filter.decision import Envelope  # noqa: E402
from postdesk.filter.rules import automatic  # noqa: E402
from postdesk.ingest import ingest  # noqa: E402
from postdesk.notifier import policy  # noqa: E402
from postdesk.notifier.worker import Worker  # noqa: E402
from postdesk.store import Store  # noqa: E402

T0 = datetime(2026, 12, 1, 9, 0, 0)
SUPPORT = "support@example.com"


class Collector:
    """Stands in for the SMTP submitter: keeps every mail, accepts all."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.broken = False

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def send(self, sender: str, recipient: str, data: bytes) -> str:
        self.sent.append((recipient, data))
        return f"BENCH{len(self.sent):06d}"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Desk:
    """A store, a config and a worker in a temp directory."""

    def __init__(self, tmp: Path, name: str, **notifier) -> None:
        d = tmp / name
        d.mkdir()
        self.config = configmod.from_dict(
            {
                "organization": {
                    "system_addresses": [SUPPORT],
                    "reply_to": SUPPORT,
                    "team": ["team@example.com"],
                    "staff": ["@example.com"],
                },
                "store": {"url": f"sqlite:///{d}/postdesk.db", "attachments": str(d / "attachments")},
                "notifier": {"quiet_period": 120, **notifier},
                "limits": {"new_tickets_per_sender": 0},
                "trust": {"trusted_networks": ["127.0.0.0/8"], "verify": False, "ack_unauthenticated": True},
            }
        )
        self.store = Store.from_config(self.config)
        self.store.init(self.config.organization.first_ticket_number)
        self.clock = Clock()
        self.out = Collector()
        self.worker = Worker(self.config, self.store, self.clock, submitter_factory=lambda: self.out)
        self.n = 0

    def mail(self, sender: str, subject: str, body: str, *, cc: str = "", in_reply_to: str = "", client: str = "192.0.2.10") -> None:
        self.n += 1
        head = [
            f"From: {sender}",
            f"To: {SUPPORT}",
            f"Subject: {subject}",
            f"Message-ID: <bench{self.n}@{sender.partition('@')[2]}>",
            "Date: Tue, 01 Dec 2026 09:00:00 +0000",
        ]
        if cc:
            head.append(f"Cc: {cc}")
        if in_reply_to:
            head += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
        raw = ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()
        env = Envelope(sender=sender, recipients=(SUPPORT,), queue_id=f"Q{self.n}", client_address=client)
        ingest(raw, env, self.store, self.config, now=self.clock.now)

    def next_due(self, kind: str) -> datetime | None:
        due = [o["due_at"] for o in self.store.list_outbox() if o["state"] == "queued" and o["kind"] == kind]
        return min(datetime.fromisoformat(d.rstrip("Z")) for d in due) if due else None

    def close(self) -> None:
        self.store.close()


def loop_rounds(tmp: Path, name: str, rounds: int) -> tuple[list[int], timedelta]:
    """Mails out to the two auto-responding customers per round, and the
    simulated time the rounds took."""
    desk = Desk(tmp, name)
    customers = ("ann@a.example", "ben@b.example")
    desk.mail(customers[0], "Printer on fire", "It is on fire.", cc=customers[1])
    desk.worker.run_pass()  # acknowledgement and team alert
    desk.clock.now += timedelta(seconds=30)
    desk.mail("bob@example.com", "Re: [#1000] Printer on fire", "We are on it.", client="127.0.0.1")
    per_round: list[int] = []
    for _ in range(rounds):
        desk.worker.run_pass()  # team alerts about the answers: not customer mail
        due = desk.next_due("update")
        if due is None:
            per_round.append(0)
            break
        desk.clock.now = max(desk.clock.now, due)
        before = len(desk.out.sent)
        desk.worker.run_pass()
        fresh = [(to, data) for to, data in desk.out.sent[before:] if to in customers]
        per_round.append(len(fresh))
        # Each auto-responder answers within seconds, with no RFC 3834 header.
        desk.clock.now += timedelta(seconds=5)
        for to, data in fresh:
            m = message_from_bytes(data)
            desk.mail(to, "Re: " + str(m["Subject"]), "I am out of the office until Monday.", in_reply_to=m["Message-ID"])
    desk.close()
    return per_round, desk.clock.now - T0


def backscatter(tmp: Path, name: str, senders: list[str]) -> tuple[int, int, int]:
    """(acks sent, most acks to one sender, sender keys) for one burst."""
    desk = Desk(tmp, name)
    for i, sender in enumerate(senders):
        desk.clock.now = T0 + timedelta(seconds=i * 0.5)
        desk.mail(sender, f"You have won {i}", "Claim your prize.")
        if i % 50 == 49:
            desk.worker.run_pass()
    desk.worker.run_pass()
    acks = [o["recipient"] for o in desk.store.list_outbox() if o["kind"] == "ack" and o["state"] == "sent"]
    per: dict[str, int] = {}
    for a in acks:
        per[policy.sender_key(a)] = per.get(policy.sender_key(a), 0) + 1
    desk.close()
    return len(acks), max(per.values(), default=0), len({policy.sender_key(s) for s in senders})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30, help="round limit of the loop scenario")
    ap.add_argument("--senders", type=int, default=300, help="forged senders in the burst")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("postdesk").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="postdesk-bench-loops-"))
    try:
        cfg = configmod.from_dict({})
        n = cfg.notifier
        print(f"config: quiet_period=120 update_limit={n.update_limit}/{int(n.update_window)}s "
              f"ack_limit={n.ack_limit} ack_global_limit={n.ack_global_limit}/{int(n.ack_window)}s "
              f"auto_seconds={automatic.AUTO_SECONDS}s")
        rounds, took = loop_rounds(tmp, "loop", args.rounds)
        converged = rounds and rounds[-1] == 0
        print(f"loop, as configured:        mails out per round {rounds}  total={sum(rounds)} in {took} simulated; "
              + (f"converged: no mail after round {max(i + 1 for i, n in enumerate(rounds) if n) if any(rounds) else 0}" if converged else f"NOT converged in {len(rounds)} rounds"))
        saved = automatic.AUTO_SECONDS
        automatic.AUTO_SECONDS = -1  # baseline: no timing rule in the filter, the notifier's caps only
        try:
            base, base_took = loop_rounds(tmp, "loop-baseline", args.rounds)
        finally:
            automatic.AUTO_SECONDS = saved
        print(f"loop, caps only (baseline): mails out per round {base}  total={sum(base)} in {base_took} simulated "
              f"(ratio as configured / baseline = {sum(rounds) / max(1, sum(base)):.2f})")

        forged = [f"user{i}@spam{i % 37}.example" for i in range(args.senders)]
        sent, most, keys = backscatter(tmp, "forged", forged)
        print(f"backscatter, {args.senders} forged senders: acks sent={sent} ({sent / args.senders:.3f} per forged sender, "
              f"at most {most} to one sender)")
        plus = [f"jane+{i}@victim.example" for i in range(args.senders)]
        sent, most, keys = backscatter(tmp, "plus", plus)
        print(f"backscatter, {args.senders} plus-address variants of one sender: acks sent={sent} (to {keys} sender)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
