#!/usr/bin/env python3
"""Benchmark: notifier throughput, as a ratio to Postfix's own smtp-source.

A private Postfix (loopback high port, own queue) relays everything to
``smtp-sink``.  Interleaved rounds of:

  notifier  N due outbox rows (new tickets recorded through ``Store.record``:
            one acknowledgement and one team alert each) sent by one
            ``Worker`` pass over its one SMTP connection, one mail in flight
            (RSET+MAIL+RCPT+BDAT in one write, as Postfix offers PIPELINING
            and CHUNKING; --no-pipelining for the classic exchange);
  source    ``smtp-source -d -s 1 -m N -l SIZE``: the same number of mails of
            the same (average) size, one connection, one after the other, as
            the notifier does.

Both clocks run from the first mail handed to Postfix until Postfix's log
shows the last of the N relayed to smtp-sink ("status=sent"), so each figure
is notifications delivered per second through the same Postfix.  Also shown:
the submission-only rate (until the client is done).  The ratio is
notifier / source, median over the rounds.  SQLite store (the default
deployment, synchronous=FULL) in a temp directory.  Needs root and Postfix.

    .venv/bin/python bench/notifier.py                 # ~1 min
    .venv/bin/python bench/notifier.py --tickets 1000 --rounds 5
    .venv/bin/python bench/notifier.py --no-pipelining     # the classic exchange, for comparison
    .venv/bin/python bench/notifier.py --html              # HTML alerts against text-only, same run

``--html``: interleaved rounds of the same tickets as text-only mail and
with HTML stored on each action (an Outlook-like reply with a table and a
quoted history, as the inbound path stores it), so each alert goes as
multipart/alternative (quote cut, sanitised again, the HTML template);
prints each side's delivered rate and the ratio HTML / text.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postdesk import config as configmod  # noqa: E402
from postdesk.clock import utcnow as now  # noqa: E402
from postdesk.filter.decision import Decision, Envelope, Kind  # noqa: E402
from postdesk.notifier.smtp import Submitter  # noqa: E402
from postdesk.notifier.worker import Worker  # noqa: E402
from postdesk.store import Store  # noqa: E402
from postdesk.testing.postfix import PrivatePostfix, available  # noqa: E402
from postdesk.testing.wait import free_port, port_open, wait_for  # noqa: E402

# A staff member's Outlook reply, as the inbound path stores it (sanitised:
# no classes or ids left): formatting, a table, and the quoted history.
HTML = (
    "<div><p>Hello,</p><p>we have <b>re-sent</b> your order. Tracking:</p>"
    "<table border=\"1\" cellpadding=\"4\"><tr><th>Item</th><th>Qty</th><th>Carrier</th></tr>"
    + "".join(f"<tr><td>Item {i}</td><td>{i}</td><td>DHL 00340434{i:06d}</td></tr>" for i in range(12))
    + "</table><p>Kind regards,<br><i>Bob</i></p></div>"
    "<div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm\"><p><b>From:</b> Customer<br>"
    "<b>Sent:</b> Monday</p></div>" + "<p>" + "Hello, my order did not arrive. " * 40 + "</p>"
)


class Measuring(Submitter):
    """The notifier's submitter, noting the size of each mail (for smtp-source -l)."""

    sizes: list[int] = []

    def send(self, sender: str, recipient: str, data: bytes) -> str:
        Measuring.sizes.append(len(data))
        return super().send(sender, recipient, data)


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="postdesk-bench-notifier-"))
        os.chmod(self.dir, 0o755)
        self.sink_port = free_port()
        self.pf = PrivatePostfix(self.dir / "postfix", free_port(), self.sink_port)
        self.sink = None
        self.config = configmod.from_dict(
            {
                "organization": {"system_addresses": ["support@example.com"], "reply_to": "support@example.com", "team": ["team@example.net"]},
                "store": {"url": f"sqlite:///{self.dir}/postdesk.db", "attachments": str(self.dir / "attachments")},
                # Throughput, not policy: the acknowledgement caps would hold the burst back.
                "notifier": {"smtp": f"127.0.0.1:{self.pf.port}", "ack_limit": 1_000_000, "ack_global_limit": 1_000_000},
            },
            source="<bench>",
        )
        self.store = Store.from_config(self.config)
        self.serial = 0

    def start(self) -> None:
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        self.sink = subprocess.Popen([exe, "-u", "postfix", f"127.0.0.1:{self.sink_port}", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.sink_port), 10, "smtp-sink")
        self.pf.start()
        self.store.init(1000)

    def stop(self) -> None:
        self.pf.stop()
        if self.sink is not None:
            self.sink.terminate()
            self.sink.wait(10)
        self.store.close()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- measuring ------------------------------------------------------------

    def delivered(self) -> int:
        return self.pf.log().count(" status=sent ")

    def wait_delivered(self, target: int) -> float:
        wait_for(lambda: self.delivered() >= target, 300, f"{target} mails relayed to smtp-sink", interval=0.02)
        return time.perf_counter()

    def make_rows(self, tickets: int, html: bool = False) -> int:
        """Record ``tickets`` new tickets: 2 due rows each (ack + alert);
        ``html``: with HTML on each action (``HTML``)."""
        when = now() - timedelta(seconds=1)
        keys: list[str] = []
        for _ in range(tickets):
            self.serial += 1
            i = self.serial
            key = f"{uuid.uuid4().hex}@bench.example.org"
            d = Decision(
                kind=Kind.NEW,
                message_key=key,
                message_id=key,
                author=f"customer{i}@example.org",
                author_name=f"Customer {i}",
                subject=f"Order {i} did not arrive",
                original_subject=f"Order {i} did not arrive",
                text=(f"Hello, order {i} did not arrive. " * 30)[:900],
                new_text=(f"Hello, order {i} did not arrive. " * 30)[:900],
            )
            env = Envelope(sender=d.author, recipients=("support@example.com",), queue_id="BENCH")
            self.store.record(lambda known, d=d: d, env, self.config, when)
            if html:
                keys.append(key)
        if keys:
            from sqlalchemy import update

            from postdesk.store.models import Action

            with self.store.session() as s:
                s.execute(update(Action).where(Action.message_id.in_(keys)).values(html=HTML))
        return tickets * 2

    def run_notifier(self, tickets: int, html: bool = False) -> tuple[float, float]:
        count = self.make_rows(tickets, html)
        base = self.delivered()
        def submitter():
            sub = Measuring.from_config(self.config)
            sub.pipelining = not self.args.no_pipelining
            return sub

        worker = Worker(self.config, self.store, submitter_factory=submitter)
        t0 = time.perf_counter()
        sent = 0
        while True:
            stats = worker.run_pass()
            sent += stats.sent
            if not stats.handled:
                break
        t1 = time.perf_counter()
        if sent != count:
            raise RuntimeError(f"notifier sent {sent} of {count}")
        t2 = self.wait_delivered(base + count)
        return count / (t1 - t0), count / (t2 - t0)

    def run_source(self, count: int, size: int) -> tuple[float, float]:
        exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
        base = self.delivered()
        t0 = time.perf_counter()
        subprocess.run(
            [exe, "-d", "-s", "1", "-m", str(count), "-l", str(size), "-f", "support@example.com", "-t", "customer@example.org", f"127.0.0.1:{self.pf.port}"],
            check=True,
            capture_output=True,
        )
        t1 = time.perf_counter()
        t2 = self.wait_delivered(base + count)
        return count / (t1 - t0), count / (t2 - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tickets", type=int, default=500, help="new tickets per round (2 notifications each)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("--no-pipelining", action="store_true", help="classic MAIL/RCPT/DATA, one reply at a time (for comparison)")
    ap.add_argument("--html", action="store_true", help="HTML alerts against text-only, interleaved, in one run")
    args = ap.parse_args()
    ok, why = available()
    if not ok:
        print(f"bench/notifier.py: cannot run: {why}", file=sys.stderr)
        return 69
    logging.getLogger("postdesk").setLevel(logging.WARNING)
    b = Bench(args)
    b.start()
    try:
        b.run_notifier(20)  # warm-up: imports, connections, page cache
        if args.html:
            return html_rounds(b, args)
        size = int(statistics.mean(Measuring.sizes))
        results = []
        for r in range(args.rounds):
            n_sub, n_del = b.run_notifier(args.tickets)
            s_sub, s_del = b.run_source(args.tickets * 2, size)
            results.append((n_del, s_del, n_sub, s_sub))
            print(
                f"round {r + 1}: notifier {n_del:7.1f} msg/s delivered ({n_sub:7.1f} submitted)   "
                f"smtp-source {s_del:7.1f} msg/s delivered ({s_sub:7.1f} submitted)   ratio {n_del / s_del:.2f}"
            )
        med = lambda i: statistics.median(x[i] for x in results)  # noqa: E731
        ratios = [x[0] / x[1] for x in results]
        print(
            f"\n{args.tickets * 2} notifications x {args.rounds} rounds, ~{size} bytes each, one SMTP connection each side"
            f" (notifier {'without' if args.no_pipelining else 'with'} PIPELINING/CHUNKING; smtp-source without)\n"
            f"notifier:    {med(0):.1f} msg/s delivered through Postfix to smtp-sink (median; {med(2):.1f} msg/s submitted)\n"
            f"smtp-source: {med(1):.1f} msg/s delivered (median; {med(3):.1f} msg/s submitted)\n"
            f"ratio notifier/smtp-source: {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)}; goal >= 0.5x)"
        )
    finally:
        b.stop()
    return 0


def html_rounds(b: Bench, args) -> int:
    """Text-only and HTML rounds interleaved; the ratio HTML / text (delivered)."""
    b.run_notifier(20, html=True)  # warm-up of the HTML path
    text_rates, html_rates = [], []
    for r in range(args.rounds):
        Measuring.sizes.clear()
        t_sub, t_del = b.run_notifier(args.tickets)
        t_size = int(statistics.mean(Measuring.sizes))
        Measuring.sizes.clear()
        h_sub, h_del = b.run_notifier(args.tickets, html=True)
        h_size = int(statistics.mean(Measuring.sizes))
        text_rates.append(t_del)
        html_rates.append(h_del)
        print(
            f"round {r + 1}: text {t_del:7.1f} msg/s delivered ({t_sub:7.1f} submitted, ~{t_size} bytes)   "
            f"html {h_del:7.1f} msg/s delivered ({h_sub:7.1f} submitted, ~{h_size} bytes)   ratio {h_del / t_del:.2f}"
        )
    ratios = [h / t for h, t in zip(html_rates, text_rates)]
    print(
        f"\n{args.tickets * 2} notifications per side x {args.rounds} rounds (acks stay text; alerts multipart/alternative on the HTML side)\n"
        f"text: {statistics.median(text_rates):.1f} msg/s delivered (median)   html: {statistics.median(html_rates):.1f} msg/s delivered (median)\n"
        f"ratio html/text: {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
