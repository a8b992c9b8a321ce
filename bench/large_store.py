#!/usr/bin/env python3
"""Large stores: follow-up lookup and ingest time at 10^3, 10^5 and 10^6 tickets.

    .venv/bin/python bench/large_store.py                        # SQLite, and PostgreSQL if reachable
    .venv/bin/python bench/large_store.py --sizes 1000,100000 --db sqlite
    POSTDESK_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test .venv/bin/python bench/large_store.py

One store per size and database (postdesk.testing.bulk generates the
tickets in the database: people, actions, Message-IDs, participants, outbox
rows in a help desk's proportions).  The stores are measured in interleaved
rounds (a busy moment of the machine falls on every size alike), on the
store's own code paths:

* lookup by tag: ``KnownView.ticket(N)`` (a ``[#N]`` in the subject);
* lookup by In-Reply-To: ``KnownView.ticket_for_message_ids([id])``;
* ingest: whole messages through ``postdesk.ingest`` (parse, filter, store,
  commit): new tickets from new senders, follow-ups by tag and replies by
  In-Reply-To to tickets spread over the store;

and prints each as a ratio to the figure at the first size in the same run
(flat is ~1.0; the medians of the rounds), with the query plans of the store's frequent queries
(postdesk.store.plans) at the largest size, and the table scans they do
(none expected).  Sender authentication is off (``[trust] verify =
false``): DNS is not what this measures.  PostgreSQL runs in a schema of its
own, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postdesk import config as configmod  # noqa: E402
from postdesk.filter.decision import Envelope  # noqa: E402
from postdesk.ingest import ingest  # noqa: E402
from postdesk.store import Store, plans  # noqa: E402
from postdesk.store.view import KnownView  # noqa: E402
from postdesk.testing import bulk, pgschema  # noqa: E402

SUPPORT = "support@example.com"
DEFAULT_PG = os.environ.get("POSTDESK_BENCH_PG_URL") or os.environ.get("POSTDESK_TEST_PG_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def config_for(url: str, attachments: Path) -> configmod.Config:
    return configmod.from_dict(
        {
            "organization": {"system_addresses": [SUPPORT], "reply_to": SUPPORT, "team": ["team@example.com"], "staff": ["@example.com"]},
            "store": {"url": url, "attachments": str(attachments)},
            "trust": {"verify": False, "trusted_networks": ["127.0.0.0/8"]},
            # The rate limits would refuse the bench's senders after a few mails.
        },
        source="<bench>",
    )


def mail(subject: str, sender: str, in_reply_to: str = "") -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = SUPPORT
    m["Subject"] = subject
    m["Date"] = format_datetime(datetime.now().astimezone())
    m["Message-ID"] = make_msgid(domain="customer.example")
    if in_reply_to:
        m["In-Reply-To"] = f"<{in_reply_to}>"
        m["References"] = f"<{in_reply_to}>"
    m.set_content("Hello,\n\nthe printer on floor 3 jams on every second page since Monday.\n\nRegards\n" + "x" * 1500 + "\n")
    return m.as_bytes()


def median_us(values: list[float]) -> float:
    return statistics.median(values) * 1e6


class Bulk:
    """The bulk tickets so far: index i -> ticket number (each fill's are
    contiguous; the bench's own new tickets sit between fills)."""

    def __init__(self) -> None:
        self.fills: list[bulk.Filled] = []

    @property
    def count(self) -> int:
        return sum(f.count for f in self.fills)

    def number(self, i: int) -> int:
        for f in self.fills:
            if f.first_index <= i < f.first_index + f.count:
                return f.first_number + (i - f.first_index)
        raise IndexError(i)


def lookups(store: Store, filled: Bulk, rng: random.Random, count: int) -> tuple[float, float]:
    """Median microseconds of a lookup by tag and by In-Reply-To."""
    tag: list[float] = []
    irt: list[float] = []
    with store.engine.connect() as conn:
        known = KnownView(conn, store.secret)
        for _ in range(count):
            i = rng.randrange(filled.count)
            n = filled.number(i)
            t0 = time.perf_counter()
            info = known.ticket(n)
            t1 = time.perf_counter()
            number = known.ticket_for_message_ids([f"<{bulk.message_key(i, rng.randrange(bulk.ACTIONS))}>"])
            t2 = time.perf_counter()
            assert info is not None and number == n, (i, info, number)
            tag.append(t1 - t0)
            irt.append(t2 - t1)
        conn.rollback()
    return median_us(tag), median_us(irt)


def ingest_times(store: Store, config: configmod.Config, filled: Bulk, rng: random.Random, count: int, warmup: int = 20) -> tuple[float, Counter]:
    """Median milliseconds to ingest a message (a mix of new and follow-up),
    after ``warmup`` messages not counted; and the outcomes."""
    times: list[float] = []
    outcomes: Counter = Counter()
    for j in range(-warmup, count):
        i = rng.randrange(filled.count)
        kind = j % 4
        # a participant of ticket i: its staff member (trusted: loopback)
        sender = f"staff{i % bulk.STAFF}.{0}@example.com"
        if kind in (0, 1):
            raw = mail(f"New problem {uuid.uuid4().hex[:8]}", f"new{uuid.uuid4().hex[:10]}@customer.example")
        elif kind == 2:
            raw = mail(f"Re: [#{filled.number(i)}] Printer", sender)
        else:
            raw = mail("Re: Printer", sender, in_reply_to=bulk.message_key(i, 1))
        env = Envelope(sender="bounce@customer.example", recipients=(SUPPORT,), queue_id=f"B{j:05d}", client_address="127.0.0.1")
        t0 = time.perf_counter()
        result = ingest(raw, env, store, config)
        if j >= 0:
            times.append(time.perf_counter() - t0)
            outcomes[result.outcome.value] += 1
    return (statistics.median(times) * 1000 if times else float("nan")), outcomes


class Sized:
    """One store of one size: its config, its bulk tickets, where it lives."""

    def __init__(self, name: str, url: str, size: int, workdir: Path) -> None:
        self.name, self.size = name, size
        self.schema: pgschema.FreshSchema | None = None
        if name == "postgresql":
            self.schema = pgschema.create(url, prefix="pd_bench_")
            store_url = self.schema.url
        else:
            store_url = f"sqlite:///{workdir}/postdesk-{size}.db"
        self.config = config_for(store_url, workdir / f"attachments-{size}")
        self.store = Store.from_config(self.config)
        self.store.init(1000)
        self.filled = Bulk()
        self.tag: list[float] = []
        self.irt: list[float] = []
        self.ingest: list[float] = []
        self.outcomes: Counter = Counter()

    def drop(self, keep: bool) -> None:
        self.store.close()
        if self.schema and not keep:
            self.schema.drop()


def run_db(name: str, url: str, sizes: list[int], args, keep: bool) -> list[tuple[int, float, float, float, float]]:
    """Build one store per size, then measure them in interleaved rounds, so
    a busy moment of the machine falls on every size alike."""
    workdir = Path(tempfile.mkdtemp(prefix="postdesk-large-"))
    stores: list[Sized] = []
    fill_s: dict[int, float] = {}
    rng = random.Random(12)
    try:
        for size in sizes:
            sized = Sized(name, url, size, workdir)
            stores.append(sized)
            progress = (lambda d, n: print(f"  {name}: {d}/{n}", end="\r", file=sys.stderr)) if args.progress else None
            t0 = time.monotonic()
            sized.filled.fills.append(bulk.fill(sized.store, size, progress=progress))
            fill_s[size] = time.monotonic() - t0
            print(f"{name:10} {size:>9,} tickets  filled in {fill_s[size]:7.1f} s", file=sys.stderr)
            # warm-up: the first messages pay for caches and connections
            ingest_times(sized.store, sized.config, sized.filled, rng, 0, warmup=20)
        for r in range(args.rounds):
            for sized in stores:
                tag_us, irt_us = lookups(sized.store, sized.filled, rng, args.lookups // args.rounds)
                ingest_ms, outcomes = ingest_times(sized.store, sized.config, sized.filled, rng, args.messages // args.rounds, warmup=0)
                sized.tag.append(tag_us)
                sized.irt.append(irt_us)
                sized.ingest.append(ingest_ms)
                sized.outcomes.update(outcomes)
            print(f"  {name}: round {r + 1}/{args.rounds}", file=sys.stderr)
        rows = []
        for sized in stores:
            tag_us, irt_us, ingest_ms = statistics.median(sized.tag), statistics.median(sized.irt), statistics.median(sized.ingest)
            rows.append((sized.size, fill_s[sized.size], tag_us, irt_us, ingest_ms))
            print(
                f"{name:10} {sized.size:>9,} tickets  tag {tag_us:7.1f} us  in-reply-to {irt_us:7.1f} us  ingest {ingest_ms:6.2f} ms ({dict(sized.outcomes)})",
                file=sys.stderr,
            )
        largest = stores[-1]
        with largest.store.engine.connect() as conn:
            i = largest.filled.count // 2
            sample = plans.sample(conn, largest.filled.number(i), bulk.message_key(i, 1), datetime.utcnow())
            print(f"\nquery plans on {name} at {largest.size:,} tickets (sample ticket #{sample.number}):")
            for qname, lines in plans.report(conn, sample).items():
                scans = plans.full_scans(lines)
                missing = plans.missing_indexes(lines, plans.HOT[qname].uses)
                verdict = "ok" if not scans and not missing else f"SCANS {scans} MISSES {missing}"
                print(f"  {qname} ({plans.HOT[qname].why}): {verdict}")
                for line in lines:
                    print(f"      {line}")
            conn.rollback()
    finally:
        for sized in stores:
            sized.drop(keep)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept: {workdir} {' '.join(s.schema.name if s.schema else '' for s in stores)}", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,100000,1000000", help="ticket counts, ascending (default: 10^3, 10^5, 10^6)")
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--pg-url", default=DEFAULT_PG)
    p.add_argument("--lookups", type=int, default=2000, help="lookups per size")
    p.add_argument("--messages", type=int, default=200, help="messages ingested per size")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the lookups and messages are split into")
    p.add_argument("--keep", action="store_true", help="keep the stores")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = {}
    for db in dbs:
        if db == "postgresql":
            try:
                import sqlalchemy

                e = sqlalchemy.create_engine(args.pg_url)
                with e.connect():
                    pass
                e.dispose()
            except Exception as exc:
                print(f"postgresql: skipped ({exc.__class__.__name__}: {str(exc).splitlines()[0]})", file=sys.stderr)
                continue
        results[db] = run_db(db, args.pg_url, sizes, args, args.keep)
    print("\nratios against the first size, same run (1.00 = as fast as with the fewest tickets):")
    print(f"  {'db':10} {'tickets':>10} {'fill s':>8} {'tag lookup':>11} {'in-reply-to':>12} {'ingest':>8}")
    for db, rows in results.items():
        base = rows[0]
        for size, fill_s, tag, irt, ing in rows:
            print(f"  {db:10} {size:>10,} {fill_s:8.1f} {tag / base[2]:11.2f} {irt / base[3]:12.2f} {ing / base[4]:8.2f}")
        print(f"  {db:10} {'(first)':>10} {'':8} {base[2]:9.1f}us {base[3]:10.1f}us {base[4]:6.2f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
