"""One SQLite writer at a time, queued in Python instead of in SQLite.

SQLite allows one write transaction at a time.  The milter runs one store
thread on SQLite (server.store_threads); should several collide on it, the
losers would wait in SQLite's busy handler, which sleeps in growing steps
(up to 100 ms) instead of waking when the lock is free: bench/milter.py
showed a p99 over 1 s with 4 threads.  A
Python lock around ``Store.record`` hands the write over at once, while
parsing (done by ``postdesk.ingest`` before ``record``) still overlaps.
Other processes (notifier, CLI) still meet SQLite's own locking, bounded by
``[store] busy_timeout``.  PostgreSQL locks rows, so it gets no such lock.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postdesk.ingest import MessageStore


# Per store thread: how long its last ``record`` waited for the lock and
# then held it (seconds), for the milter's DEBUG timing line.
last = threading.local()


class SerializedStore:
    """Wraps a Store: ``record`` one at a time; everything else passes through."""

    def __init__(self, store: MessageStore) -> None:
        self._store = store
        self._lock = threading.Lock()

    def record(self, *args: Any, **kwargs: Any) -> Any:
        asked = time.monotonic()
        with self._lock:
            got = time.monotonic()
            try:
                return self._store.record(*args, **kwargs)
            finally:
                last.wait, last.hold = got - asked, time.monotonic() - got

    def close(self) -> None:
        self._store.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def for_milter(store: MessageStore, url: str) -> MessageStore:
    return SerializedStore(store) if url.startswith("sqlite") else store
