"""Group commit: the messages waiting at once are recorded in one transaction.

The milter and the LMTP server take many SMTP sessions at once, but a
store has one writer at a time in practice: SQLite allows one write
transaction, and on PostgreSQL every new ticket takes the same counter row.
So instead of one transaction per message, each waiting for the last, a
writer thread takes every message waiting when it is free (up to
``MAX_BATCH``), decides and applies them in order in one transaction
(``Store.record_batch``), commits once, and only then answers each of
them: one BEGIN, one COMMIT and one fsync for the batch, and no message
is answered before the commit that holds it.

When the batch fails, nothing of it is kept (one transaction), and:

- the store is unavailable (locked past busy_timeout, down, disk full):
  every message of the batch gets that error at once (451 / 75), without
  a second wait per message;
- anything else (a lost race on a unique row, one message the filter or
  the store cannot take): each message is recorded again alone
  (``Store.record``, with its own retries), so one message's trouble is
  answered to that message only.

``GroupCommit`` is a ``MessageStore``: ``postdesk.ingest.ingest`` calls its
``record`` from the adapter's own thread (an SMTP session's), which waits
for the answer; the database is only ever used on the writer threads,
which Python's threading module started (see ``postdesk.milter.app``:
libmilter's threads must not run the store).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from postdesk.store.core import RETRY_SQLSTATES
from postdesk.store.errors import StoreUnavailable

if TYPE_CHECKING:
    from postdesk.config import Config
    from postdesk.filter.decision import Decision, Envelope, Known
    from postdesk.ingest import MessageStore
    from postdesk.outcomes import Result

log = logging.getLogger("postdesk.store")

# At most this many messages in one transaction: a longer batch makes its
# first message wait for all the others' decisions before its commit.
MAX_BATCH = 16
# Writer threads.  SQLite has one writer: a second thread would only wait
# for the lock.  PostgreSQL: two, so one batch is decided while the other
# waits for its commit on the server (what pays when the database runs on
# another host); new tickets still queue on the counter row.
SQLITE_WRITERS = 1
WRITERS = 2


def writers_for(url: str) -> int:
    return SQLITE_WRITERS if url.startswith("sqlite") else WRITERS


@dataclass
class Timing:
    """Where one message's time went with the writer (time.monotonic seconds),
    for the milter's DEBUG line (docs/postfix.md, "Where the time goes")."""

    queued: float = field(default_factory=time.monotonic)
    started: float = 0.0  # the writer began its batch
    before: float = 0.0  # seconds spent on the messages ahead of it in the batch
    applied: float = 0.0  # it was decided and applied
    committed: float = 0.0  # the batch's commit returned
    batch: int = 0  # how many messages shared the transaction


@dataclass
class Job:
    """One message waiting for a writer, and, once answered, its outcome."""

    decide: Callable[[Known], Decision]
    envelope: Envelope
    config: Config
    now: datetime
    timing: Timing = field(default_factory=Timing)
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None


_last = threading.local()


def take_timing() -> Timing | None:
    """The Timing of the last message this thread recorded through a
    GroupCommit, once (None if it recorded none since it last asked)."""
    timing = getattr(_last, "timing", None)
    _last.timing = None
    return timing


class GroupCommit:
    """Wraps a Store: ``record`` joins the next batch; the rest passes through."""

    def __init__(self, store: MessageStore, writers: int = 1, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        # A store without record_batch (a test's) is written one message at a time.
        self._batches = hasattr(store, "record_batch")
        self._max_batch = max(1, max_batch) if self._batches else 1
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"postdesk-writer-{i}", daemon=True) for i in range(max(1, writers))]
        for t in self._threads:
            t.start()

    # -- MessageStore --------------------------------------------------------------

    def record(self, decide: Callable[[Known], Decision], envelope: Envelope, config: Config, now: datetime) -> Result:
        job = Job(decide, envelope, config, now)
        self._queue.put(job)
        job.done.wait()
        _last.timing = job.timing
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def stop(self) -> None:
        """Let the writers finish what is queued; the store stays open."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    def close(self) -> None:
        """``stop``, then close the store."""
        self.stop()
        close = getattr(self._store, "close", None) or getattr(self._store, "dispose", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    # -- the writer ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            while len(jobs) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # the stop is for after this batch
                    break
                jobs.append(more)
            self._commit(jobs)

    def _commit(self, jobs: list[Job]) -> None:
        if not self._batches:
            self._alone(jobs[0])
            return
        started = time.monotonic()
        for job in jobs:
            job.timing.started, job.timing.batch = started, len(jobs)

        def applied(i: int) -> None:
            jobs[i].timing.applied = time.monotonic()
            if i + 1 < len(jobs):
                jobs[i + 1].timing.before = jobs[i].timing.applied - started

        try:
            items = [(j.decide, j.envelope, j.config, j.now) for j in jobs]
            results = self._store.record_batch(items, done=applied)  # type: ignore[attr-defined]  # checked: self._batches
        except StoreUnavailable as e:
            if _sqlstate(e) not in RETRY_SQLSTATES:
                self._answer(jobs, error=e)
                return
            # A PostgreSQL deadlock or serialization failure: Store.record
            # retries each message.
            for job in jobs:
                self._alone(job)
            return
        except Exception as e:  # noqa: BLE001 -- answered below, never lost
            if len(jobs) == 1:
                self._alone(jobs[0])
                return
            log.info("store: a batch of %d failed (%s: %s); recording each alone", len(jobs), type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            for job in jobs:
                self._alone(job)
            return
        committed = time.monotonic()
        for job, result in zip(jobs, results, strict=True):
            job.result, job.timing.committed = result, committed
            job.done.set()

    def _alone(self, job: Job) -> None:
        """One message in its own transaction (Store.record: retries, duplicates)."""
        job.timing.started, job.timing.batch, job.timing.before = time.monotonic(), 1, 0.0
        try:
            job.result = self._store.record(job.decide, job.envelope, job.config, job.now)
        except Exception as e:  # noqa: BLE001 -- the session answers 451
            job.error = e
        job.timing.applied = job.timing.committed = time.monotonic()
        job.done.set()

    @staticmethod
    def _answer(jobs: list[Job], error: BaseException) -> None:
        now = time.monotonic()
        for job in jobs:
            job.error, job.timing.applied, job.timing.committed = error, now, now
            job.done.set()


def _sqlstate(e: StoreUnavailable) -> str | None:
    return getattr(getattr(e.__cause__, "orig", None), "sqlstate", None)
