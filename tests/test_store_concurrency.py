"""Ticket numbers under concurrent writers: distinct and contiguous."""

from __future__ import annotations

import threading

from postdesk.outcomes import Outcome
from postdesk.store import Store

from test_store_support import ENVELOPE, T0, new

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
