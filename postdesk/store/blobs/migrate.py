"""``postdesk blobs migrate --to database|directory``: move blobs between backends.

What moves: every blob an attachment row references (distinct sha256, in
sha256 order, ``batch`` at a time).  Each one is streamed from the other
backend into the target and checked against its sha256 on the way (a blob
whose bytes do not match is reported and left where it is).  A blob the
target already has is skipped, so a second run continues where an
interrupted one stopped, and a run while mail is flowing is safe: readers
fall back to the other backend (``Store.open_blob``) until a blob has moved.

Into the database, a batch is one transaction, cut short after
``BATCH_BYTES`` so the SQLite write lock is never held for long; into the
directory each file is written atomically.  ``remove_source`` deletes a
blob from the source once the target has it committed.  Blobs no attachment
references are not moved (``postdesk purge`` is about those).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from postdesk.store.blobs.common import BlobCorrupt, BlobMissing
from postdesk.store.models import Attachment

if TYPE_CHECKING:
    from postdesk.store.core import Store

log = logging.getLogger("postdesk.blobs")

BATCH = 100
BATCH_BYTES = 64 * 1024 * 1024  # commit a database batch after this many bytes

_ATTACHMENTS = cast(Table, Attachment.__table__)


@dataclass
class Progress:
    moved: int = 0
    moved_bytes: int = 0
    already: int = 0  # the target had it
    removed: int = 0  # deleted from the source (remove_source)
    missing: list[str] = field(default_factory=list)  # in neither backend
    corrupt: list[str] = field(default_factory=list)  # bytes do not match the sha256

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt


def referenced(store: Store, after: str, limit: int) -> list[str]:
    """The next ``limit`` distinct sha256 referenced by attachments, after ``after``."""
    q = (
        select(_ATTACHMENTS.c.sha256)
        .where(_ATTACHMENTS.c.sha256 > after)
        .group_by(_ATTACHMENTS.c.sha256)
        .order_by(_ATTACHMENTS.c.sha256)
        .limit(limit)
    )
    with store.session(read_only=True) as s:
        return [row[0] for row in s.execute(q)]


def migrate(
    store: Store,
    to: str,
    batch: int = BATCH,
    remove_source: bool = False,
    report: Callable[[Progress, str], None] | None = None,
) -> Progress:
    """Move every referenced blob into the backend named ``to``."""
    if to == store.blobs.name:
        target, source = store.blobs, store.other_blobs
    elif to == store.other_blobs.name:
        target, source = store.other_blobs, store.blobs
    else:
        raise ValueError(f"--to must be database or directory, not {to!r}")
    if batch < 1:
        raise ValueError("--batch must be at least 1")
    progress = Progress()
    after = ""
    while True:
        shas = referenced(store, after, batch)
        if not shas:
            break
        after = shas[-1]
        done: list[str] = []  # in the target, committed once the batch ends
        pending = list(shas)
        while pending:
            with _batch(store, to) as conn:
                size = 0
                while pending and size < BATCH_BYTES:
                    sha = pending.pop(0)
                    size += _move_one(sha, source, target, conn, progress, done)
            if remove_source:
                for sha in done:
                    if source.delete(sha):
                        progress.removed += 1
            done.clear()
        if report is not None:
            report(progress, after)
    return progress


@contextlib.contextmanager
def _batch(store: Store, to: str) -> Iterator[Connection | None]:
    """One write transaction for a batch into the database; none for files."""
    if to == "database":
        with store._write() as conn:
            yield conn
    else:
        yield None


def _move_one(sha: str, source, target, conn: Connection | None, progress: Progress, done: list[str]) -> int:
    """Copy one blob; the bytes copied (0 when skipped)."""
    if target.exists(sha, conn):
        progress.already += 1
        done.append(sha)
        return 0
    try:
        # A savepoint: a blob found corrupt halfway undoes only its own rows.
        with source.reading(sha) as chunks, conn.begin_nested() if conn is not None else contextlib.nullcontext():
            size = target.put_stream(chunks, sha, conn)
    except BlobMissing:
        progress.missing.append(sha)
        log.warning("blob %s: in neither backend; left as it is", sha)
        return 0
    except BlobCorrupt as e:
        progress.corrupt.append(sha)
        log.warning("%s; left in the source", e)
        return 0
    progress.moved += 1
    progress.moved_bytes += size
    done.append(sha)
    return size
