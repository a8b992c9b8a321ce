#!/usr/bin/env python3
"""Summarise the milter's DEBUG timing lines: where a support message's time goes.

    .venv/bin/python bench/milter.py --log-level DEBUG --keep      # prints nothing of this
    .venv/bin/python bench/stages.py /tmp/postdesk-bench-*/milter.log

Each support message at ``[log] level = "DEBUG"`` gets one line
``<queue id>: timing ms data-eom=.. prepare=.. queue=.. batch=.. before=.. record=.. commit=.. hand-back=..``
(postdesk/milter/app.py, described in docs/postfix.md); this prints mean, p50
and p99 of each stage.
"""

from __future__ import annotations

import re
import sys


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))]


def main(argv: list[str]) -> int:
    rows: list[dict[str, float]] = []
    for path in argv:
        with open(path, errors="replace") as f:
            for line in f:
                m = re.search(r"timing ms (.*)", line)
                if m:
                    rows.append({k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())})
    if not rows:
        print("no timing lines (run the milter with [log] level = \"DEBUG\")", file=sys.stderr)
        return 1
    print(f"{len(rows)} support messages; ms per stage (batch: messages per transaction)")
    print(f"{'stage':12} {'mean':>7} {'p50':>7} {'p99':>7}")
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(f"{key:12} {sum(values) / len(values):7.1f} {pct(values, 50):7.1f} {pct(values, 99):7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
