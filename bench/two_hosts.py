#!/usr/bin/env python3
"""Benchmark: ingest on PostgreSQL with one milter, and with two in parallel.

Two hosts on one PostgreSQL schema (``postdesk.testing.hosts``: a private
Postfix and a milter each, attachments in the database, no notifiers).
Interleaved rounds (one, two, two, one, ...) send the same number of unique
new-ticket mails (``bench/milter.py``'s sender, 2 KB each) over the same
number of concurrent SMTP sessions: all to host one ("one milter"), or half
to each host at once ("two milters").  Throughput is what the clients see
(messages accepted per second); Postfix's queues are drained between runs.
Printed: both rates and their ratio, measured in the same run.  On one
machine the two milters share its cores with PostgreSQL and both Postfix
instances, so the ratio shows how far the store lets two hosts add up, not
what two machines would do.

    .venv/bin/python bench/two_hosts.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/two_hosts.py --pg URL --messages 600 --rounds 3 --sessions 10
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postdesk.testing import pgschema  # noqa: E402
from postdesk.testing.dns import DNSServer  # noqa: E402
from postdesk.testing.hosts import Hosts  # noqa: E402
from postdesk.testing.postfix import available  # noqa: E402
from postdesk.testing.wait import wait_for  # noqa: E402


def _bench_milter():
    """bench/milter.py's mail and sender (a module of its own name: a
    plain ``import milter`` would find pymilter's C module)."""
    spec = importlib.util.spec_from_file_location("bench_milter", ROOT / "bench" / "milter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_side(hosts: Hosts, targets: list[int], count: int, sessions: int, send_unique) -> tuple[int, float, int]:
    """``count`` mails split over ``targets``, ``sessions`` split likewise, at once."""
    results: list[tuple[float, list[float], int]] = []
    lock = threading.Lock()
    share, extra = divmod(count, len(targets))

    def one(i: int, host: int) -> None:
        r = send_unique(hosts[host].port, share + (1 if i < extra else 0), max(1, sessions // len(targets)), 0)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one, args=(i, h)) for i, h in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(r[0] for r in results)
    failures = sum(r[2] for r in results)
    return count - failures, elapsed, failures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pg", metavar="URL", required=True, help="PostgreSQL (a fresh schema in this database), e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test")
    p.add_argument("--messages", type=int, default=400, help="new-ticket mails per run (default 400)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    p.add_argument("--sessions", type=int, default=10, help="concurrent SMTP sessions in all (default 10)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory and the schema")
    args = p.parse_args(argv)
    ok, why = available()
    if not ok:
        print(f"bench/two_hosts.py: {why}", file=sys.stderr)
        return 69
    bench = _bench_milter()

    schema = pgschema.create(args.pg, prefix="pd_bench2_")
    url = schema.url
    directory = Path(tempfile.mkdtemp(prefix="postdesk-bench-hosts-"))
    dns = DNSServer({"example.org": {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]}, "_dmarc.example.org": {"TXT": ["v=DMARC1; p=none"]}}).start()
    shared = {
        "organization": {"system_addresses": [bench.SUPPORT], "reply_to": bench.SUPPORT, "team": ["team@example.com"], "staff": ["@example.com"]},
        "dns": {"nameservers": [dns.address]},
        # Every run reuses the senders customer0..N: no per-sender quota here.
        "limits": {"new_tickets_per_sender": 0},
        "log": {"level": "WARNING"},
    }
    hosts = Hosts(directory, url, shared, count=2, notifiers=0)
    rates: dict[str, list[tuple[int, float]]] = {"one": [], "two": []}
    try:
        hosts.start()
        for rnd in range(args.rounds):
            order = ["one", "two"] if rnd % 2 == 0 else ["two", "one"]
            for side in order:
                targets = [0] if side == "one" else [0, 1]
                n, elapsed, failures = run_side(hosts, targets, args.messages, args.sessions, bench.send_unique)
                wait_for(hosts.queues_empty, 300, "the Postfix queues to drain", interval=0.2)
                rates[side].append((n, elapsed))
                print(f"  round {rnd + 1} {side} milter{'s' if side == 'two' else ''}: {n:5d} msgs {elapsed:6.2f}s {n / elapsed:7.1f} msg/s"
                      + (f" failures={failures}" if failures else ""), flush=True)
    finally:
        hosts.stop()
        dns.stop()
        if not args.keep:
            schema.drop()
            shutil.rmtree(directory, ignore_errors=True)

    def rate(side: str) -> float:
        n = sum(x for x, _ in rates[side])
        t = sum(y for _, y in rates[side])
        return n / t if t else float("nan")

    one, two = rate("one"), rate("two")
    print()
    print(f"ingest on PostgreSQL, new tickets (2 KB), {args.rounds} interleaved rounds of {args.messages} mails, {args.sessions} sessions in all")
    print(f"  one milter  (one host)          {one:7.1f} msg/s  1.00")
    print(f"  two milters (two hosts at once) {two:7.1f} msg/s  {two / one:4.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
