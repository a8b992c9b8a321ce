#!/usr/bin/env python3
"""Benchmark: the notifier's lifecycle pass (pending reminders and auto-close).

``postdesk.store.lifecycle.run`` runs at the start of every notifier pass
(every ``[notifier] tick`` seconds), so its cost with nothing due is paid all
the time.  The store is filled directly (one transaction of Core inserts)
with 10,000 pending tickets, each with its own requester, beside 20,000
closed ones; their last public staff actions are one second apart.  Then,
in interleaved repetitions, the pass is timed:

  0 due     the clock just before the first reminder is due;
  100 due   the clock where exactly 100 tickets are due their reminder
            (a reminder row, a private action, reminded_at each);
  100 close the clock where exactly 100 tickets are due to close (a
            status action, the status mail queued, each); every pending
            ticket has had its reminder, so the reminder query reads the
            9,900 reminded ones in its range and skips them.

Between repetitions the state the pass changed is put back (outside the
timing).  The figures are medians; the ratios (100 due / 0 due) compare
within the same run.  The due queries' plans are printed: both must read
``ix_tickets_pending`` (status, last_public_staff_at), not scan the table.

    .venv/bin/python bench/lifecycle.py                                     # SQLite, ~30 s
    .venv/bin/python bench/lifecycle.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy  # noqa: E402
from sqlalchemy import delete, update  # noqa: E402

from postdesk import config as configmod  # noqa: E402
from postdesk.store import Store, lifecycle  # noqa: E402
from postdesk.store.models import Action, Outbox, Person, Ticket  # noqa: E402
from postdesk.testing import pgschema  # noqa: E402

BASE = datetime(2026, 1, 1, 0, 0, 0)
REMIND, CLOSE = 3 * 86400, 7 * 86400


def fill(store: Store, pending: int, closed: int) -> None:
    """``pending`` pending tickets (last public staff action BASE + i s) and
    ``closed`` closed ones, each with its own requester."""
    total = pending + closed
    with store.session() as s:
        conn = s.connection()
        conn.execute(sqlalchemy.insert(Person.__table__), [{"address": f"c{i}@customer.example", "name": "", "staff": False} for i in range(total)])
        ids = dict(conn.execute(sqlalchemy.select(Person.__table__.c.address, Person.__table__.c.id)).all())
        rows = []
        for i in range(total):
            is_pending = i < pending
            at = BASE + timedelta(seconds=i if is_pending else -86400)
            rows.append(
                {
                    "number": 1000 + i,
                    "subject": f"Ticket {i}",
                    "status": "pending" if is_pending else "closed",
                    "visible_to_customers": True,
                    "requester_id": ids[f"c{i}@customer.example"],
                    "created_at": at,
                    "updated_at": at,
                    "department": "",
                    "last_public_staff_at": at,
                    "closed_at": None if is_pending else at,
                }
            )
        conn.execute(sqlalchemy.insert(Ticket.__table__), rows)


def reset(store: Store, pending: int, reminded: bool) -> None:
    """Put back what a pass changed (not timed); ``reminded``: every pending
    ticket had its reminder already (as it has when its close is due)."""
    with store.session() as s:
        s.execute(delete(Outbox))
        s.execute(delete(Action))
        s.execute(
            update(Ticket)
            .where(Ticket.number < 1000 + pending)
            .values(status="pending", reminded_at=BASE if reminded else None, closed_at=None)
        )


def plans(store: Store, now: datetime) -> list[tuple[str, str]]:
    out = []
    engine = store.engine
    queries = {
        "close due": lifecycle.close_due_query(now - timedelta(seconds=CLOSE), lifecycle.BATCH),
        "reminder due": lifecycle.reminder_due_query(now - timedelta(seconds=REMIND), now - timedelta(seconds=CLOSE), lifecycle.BATCH),
    }
    with engine.connect() as conn:
        for name, q in queries.items():
            compiled = q.compile(dialect=engine.dialect)
            if engine.dialect.name == "sqlite":
                params = tuple(compiled.params[k] for k in compiled.positiontup or ())
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params).all()
                text = "\n".join("    " + str(r[-1]) for r in rows)
            else:
                rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).all()
                text = "\n".join("    " + r[0] for r in rows)
            out.append((name, text))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pg", metavar="URL", default="", help="PostgreSQL (a fresh schema in this database) instead of SQLite")
    p.add_argument("--pending", type=int, default=10000)
    p.add_argument("--closed", type=int, default=20000)
    p.add_argument("--due", type=int, default=100)
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="postdesk-bench-lifecycle-"))
    schema = None
    if args.pg:
        schema = pgschema.create(args.pg, prefix="pd_bench_")
        url = schema.url
    else:
        url = f"sqlite:///{tmp}/postdesk.db"
    config = configmod.from_dict(
        {
            "organization": {"system_addresses": ["support@example.com"], "reply_to": "support@example.com", "team": ["team@example.com"]},
            "store": {"url": url, "attachments": str(tmp / "attachments")},
            "lifecycle": {"pending_reminder": REMIND, "pending_close": CLOSE},
        }
    )
    store = Store.from_config(config)
    try:
        store.init(1000)
        t0 = time.perf_counter()
        fill(store, args.pending, args.closed)
        if args.pg:
            with store.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE tickets")
        print(f"filled {args.pending} pending + {args.closed} closed tickets in {time.perf_counter() - t0:.1f}s ({store.engine.dialect.name})")
        # The clocks: nothing due; exactly N due a reminder; exactly N due to close.
        scenes = {
            "0 due": BASE + timedelta(seconds=REMIND - 1),
            f"{args.due} reminders due": BASE + timedelta(seconds=REMIND + args.due - 1),
            f"{args.due} closes due": BASE + timedelta(seconds=CLOSE + args.due - 1),
        }
        times: dict[str, list[float]] = {k: [] for k in scenes}
        counts: dict[str, tuple[int, int]] = {}
        for _ in range(args.repeat):
            for name, now in scenes.items():
                reset(store, args.pending, reminded="close" in name)
                t = time.perf_counter()
                stats = lifecycle.run(store, config, now)
                times[name].append(time.perf_counter() - t)
                counts[name] = (stats.reminded, stats.closed)
        base = statistics.median(times["0 due"])
        print(f"\nlifecycle pass ({store.engine.dialect.name}), median of {args.repeat}, {args.pending} pending tickets:")
        print(f"{'scene':22} {'reminded':>8} {'closed':>6} {'ms':>8} {'ratio':>6}")
        for name in scenes:
            m = statistics.median(times[name])
            print(f"{name:22} {counts[name][0]:8d} {counts[name][1]:6d} {m * 1000:8.2f} {m / base:6.1f}")
        # Per due ticket, and what the 0-due pass costs against a notifier tick.
        per = (statistics.median(times[f"{args.due} reminders due"]) - base) / args.due * 1000
        print(f"per reminded ticket: {per:.3f} ms; the 0-due pass is {base * 1000:.2f} ms of every {config.notifier.tick:g} s tick")
        print("\nquery plans (the due queries, as the pass runs them):")
        for name, text in plans(store, scenes[f"{args.due} closes due"]):
            print(f"  {name}:\n{text}")
    finally:
        store.close()
        if schema:
            schema.drop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
