"""Ticket numbers under concurrent writers: distinct and contiguous."""

from __future__ import annotations

import multiprocessing
import threading

from test_store_support import ENVELOPE, T0, followup, new

from postdesk import config as configmod
from postdesk.outcomes import Outcome
from postdesk.store import Store

WORKERS = 8
EACH = 25


def test_concurrent_numbering(make_config, store_url):
    cfg = make_config(store_url)
    Store.from_config(cfg).init()
    results: list = []
    errors: list = []
    start = threading.Barrier(WORKERS, timeout=10)

    def worker() -> None:
        # One Store (engine, pool) per worker, as separate milter processes would have.
        store = Store.from_config(cfg)
        try:
            start.wait()
            for _ in range(EACH):
                d = new()
                results.append(store.record(lambda known, d=d: d, ENVELOPE, cfg, T0))
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert {r.outcome for r in results} == {Outcome.CREATED}
    numbers = sorted(r.ticket for r in results)
    assert numbers == list(range(1000, 1000 + WORKERS * EACH))
    store = Store.from_config(cfg)
    assert [t["number"] for t in store.list_tickets()] == numbers
    store.close()


def test_same_new_person_on_two_tickets_at_once(make_config, store_url):
    """Two follow-ups racing to add the same new address: on PostgreSQL one
    loses on people.address and is retried; both are recorded."""
    cfg = make_config(store_url)
    store = Store.from_config(cfg)
    store.init()
    a = store.record(lambda k: new(), ENVELOPE, cfg, T0).ticket
    b = store.record(lambda k: new(author="zed@customer.org"), ENVELOPE, cfg, T0).ticket
    is_pg = store_url.startswith("postgresql")
    barrier = threading.Barrier(2, timeout=5)
    results: list = []
    errors: list = []

    def run(number: int, author: str) -> None:
        d = followup(number, author=author, cc=("dave@new.example",))
        waited = []

        def decide(known):
            if is_pg and not waited:  # only the first attempt waits for the other
                waited.append(1)
                barrier.wait()
            return d

        try:
            results.append(store.record(decide, ENVELOPE, cfg, T0))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(a, "alice@customer.org")), threading.Thread(target=run, args=(b, "zed@customer.org"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert sorted((r.outcome.value, r.ticket) for r in results) == [("updated", a), ("updated", b)]
    for n in (a, b):
        assert "dave@new.example" in {p["address"] for p in store.show_ticket(n)["participants"]}
    store.close()


def _process_worker(url: str, attachments: str, count: int) -> list[int]:
    """Runs in a separate process: its own interpreter, engine and pool."""
    cfg = configmod.from_dict({"store": {"url": url, "attachments": attachments}}, source="<test>")
    store = Store.from_config(cfg)
    try:
        return [store.record(lambda known: new(), ENVELOPE, cfg, T0).ticket for _ in range(count)]
    finally:
        store.close()


def test_concurrent_numbering_across_processes(make_config, store_url):
    """As with several milter or pipe processes on one database."""
    cfg = make_config(store_url)
    store = Store.from_config(cfg)
    store.init()
    store.close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        chunks = pool.starmap(_process_worker, [(cfg.store.url, cfg.store.attachments, EACH)] * WORKERS, chunksize=1)
    numbers = sorted(n for chunk in chunks for n in chunk)
    assert numbers == list(range(1000, 1000 + WORKERS * EACH))
