#!/usr/bin/env python3
"""Benchmark: postdesk's own work per new ticket, in one process, no MTA.

    .venv/bin/python bench/ingest.py [--messages 500] [--attachment-kb 100] [--rounds 3]

What ``bench/milter.py`` cannot separate from pymilter, Postfix and the
threads: ``ingest.prepare`` (parse, SPF/DKIM/DMARC against a DNS server on
loopback, the rules' read-ahead) and ``ingest.ingest`` (the rules and the
store: one transaction per message, SQLite, ``synchronous = FULL``) on the
same unique mails ``bench/milter.py`` sends, one at a time on one thread.
Prints CPU and wall milliseconds per message, and the ratio to a baseline
taken in the same run: Python's own ``email`` parse of the same bytes
(``policy.compat32``, what ``postdesk.filter.parse`` builds on), which no
reading of the message can beat.  Exits 0 whatever the figures are (a
benchmark reports; the tests assert).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from milter import ticket_mail  # noqa: E402

from postdesk import config as configmod  # noqa: E402
from postdesk.filter.decision import Envelope  # noqa: E402
from postdesk.ingest import ingest, prepare  # noqa: E402
from postdesk.store import Store  # noqa: E402
from postdesk.testing.dns import DNSServer  # noqa: E402

SUPPORT = "support@example.com"
WARM_UP = 50


def envelope(i: int) -> Envelope:
    return Envelope(sender=f"customer{i}@example.org", recipients=(SUPPORT,), queue_id=f"B{i:06d}", client_address="127.0.0.1", helo="client.example.org")


def one_round(messages: int, attachment_kb: int, dns: DNSServer, base: int) -> tuple[float, float, float]:
    """(CPU ms, wall ms, baseline CPU ms) per message, fresh store."""
    with tempfile.TemporaryDirectory(prefix="postdesk-bench-ingest-") as d:
        config = configmod.from_dict(
            {
                "organization": {"system_addresses": [SUPPORT], "reply_to": SUPPORT, "team": ["team@example.com"], "staff": ["@example.com"]},
                "store": {"url": f"sqlite:///{d}/postdesk.db", "attachments": f"{d}/attachments"},
                "dns": {"nameservers": [dns.address]},
            },
            source="<bench/ingest.py>",
        )
        store = Store.from_config(config)
        store.init()
        mails = [(envelope(base + i), ticket_mail(base + i, attachment_kb)) for i in range(WARM_UP + messages)]

        def run(batch):
            for env, raw in batch:
                ingest(raw, env, store, config, prepared=prepare(raw, env, config))

        run(mails[:WARM_UP])
        cpu, wall = time.process_time(), time.perf_counter()
        run(mails[WARM_UP:])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        store.close()
        t = time.process_time()
        for _env, raw in mails[WARM_UP:]:
            email.message_from_bytes(raw, policy=email.policy.compat32)
        base_cpu = time.process_time() - t
    return cpu / messages * 1000, wall / messages * 1000, base_cpu / messages * 1000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--attachment-kb", type=int, default=0, help="a random attachment of this size (bench/milter.py's (c) uses 100)")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    with DNSServer({"example.org": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]}, "_dmarc.example.org": {"TXT": ["v=DMARC1; p=none"]}}) as dns:
        rounds = [one_round(a.messages, a.attachment_kb, dns, r * 100_000) for r in range(a.rounds)]
    cpu, wall, base = (statistics.median(x) for x in zip(*rounds, strict=True))
    what = f"unique new-ticket mails{f' with a {a.attachment_kb} KB attachment' if a.attachment_kb else ' (2 KB)'}"
    print(f"postdesk ingest, one thread, SQLite: {a.messages} {what}, median of {a.rounds} rounds")
    print(f"  prepare + ingest: {cpu:.2f} ms CPU, {wall:.2f} ms wall per message")
    print(f"  baseline (email.message_from_bytes of the same bytes): {base:.3f} ms CPU; postdesk costs {cpu / base:.1f}x the parse")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
