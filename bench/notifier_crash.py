#!/usr/bin/env python3
"""Benchmark: the notifier's duplicate window, measured over several kills.

Each round (``postdesk.testing.crash.notifier_kill_round``) queues an
acknowledgement and a team alert for each of --tickets new tickets, runs
``postdesk notifier`` against a sink that takes --delay seconds per mail,
``kill -9``s it after a random number of mails, starts another and waits
until every outbox row is sent.  Prints per round what arrived before the
kill, lost mails (must be 0) and copies sent twice, then the distribution.

The window: the notifier sends a mail over SMTP, and marks its row sent
when its batch (postdesk.notifier.worker.BATCH rows) is recorded; a worker
killed in between leaves those rows claimed, and once their lease runs out
([notifier] lease) another worker sends them again.  So the duplicates per
kill are the mails sent since the killed worker's last batch commit: at
most one batch.

    .venv/bin/python bench/notifier_crash.py               # ~1 min
    .venv/bin/python bench/notifier_crash.py --kills 10 --tickets 60
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postdesk.notifier.worker import BATCH  # noqa: E402
from postdesk.testing.crash import notifier_kill_round  # noqa: E402
from postdesk.testing.dns import DNSServer  # noqa: E402
from postdesk.testing.postfix import shared_tmpdir  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5, help="rounds, one kill -9 each (default 5)")
    ap.add_argument("--tickets", type=int, default=40, help="new tickets per round: 2 mails each (default 40)")
    ap.add_argument("--delay", type=float, default=0.02, help="the sink's seconds per mail (default 0.02)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    dns = DNSServer().start()
    root = shared_tmpdir("postdesk-bench-nk-")
    dups, lost = [], 0
    try:
        for k in range(args.kills):
            kill_after = rng.randint(1, 2 * args.tickets - 1)
            r = notifier_kill_round(root / f"round{k}", dns.address, tickets=args.tickets, kill_after=kill_after, delay=args.delay)
            dups.append(r.duplicates)
            lost += r.lost
            print(f"  kill {k + 1}: {r.before_kill:3d} of {r.expected} mails out before kill -9, lost {r.lost}, sent twice {r.duplicates}, all sent {r.seconds:.1f}s after the kill", flush=True)
    finally:
        dns.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.kills} kills: lost {lost} notifications; duplicates per kill: min {min(dups)} median {statistics.median(dups)} max {max(dups)} (batch size {BATCH})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
