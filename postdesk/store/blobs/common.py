"""What every blob backend offers, and the pieces they share.

A blob is an attachment's bytes, named by their SHA-256 (hex): identical
content is stored once, and a name can never point at other bytes.  A
backend can ``put`` bytes (or a stream of chunks whose SHA-256 the caller
names), ``open`` a blob for reading in chunks of at most ``CHUNK`` bytes,
tell its ``size`` (None: not there), and ``delete`` it.  ``conn`` is the
caller's transaction: the database backend writes and reads in it (a
rollback takes the blob with it); the directory backend writes files at
once, and deletes a file only once that transaction has committed.

Chunks keep memory flat: a 25 MB attachment is read, copied and sent 256 KiB
at a time, never held whole a second time.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

CHUNK = 256 * 1024  # bytes per read, per database row
_HEX64 = re.compile(r"[0-9a-f]{64}")


# Key of ``Connection.info`` under which ``Store._write`` keeps what must
# run after its transaction has committed (a file removal: never before).
AFTER_COMMIT = "postdesk_after_commit"


class BlobError(Exception):
    """A blob could not be read as stored (not an OSError: the store maps
    those to StoreUnavailable, and a missing blob is not the database being
    down)."""


class BlobMissing(BlobError, LookupError):
    """No backend holds this blob."""


class BlobCorrupt(BlobError):
    """The stored bytes do not match their name (SHA-256) or recorded size."""


class BlobInUse(BlobError):
    """Refused: attachment rows still reference this blob."""


def check_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return sha256


def chunks_of(data: bytes | bytearray | memoryview, size: int = CHUNK) -> Iterator[memoryview]:
    """Views of ``data``, ``size`` bytes each: slicing copies nothing."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), size):
        yield view[start : start + size]


def verified(chunks: Iterable[bytes], sha256: str, size: int | None) -> Iterator[bytes]:
    """``chunks`` as they come; after the last one, BlobCorrupt unless they
    add up to ``size`` bytes with SHA-256 ``sha256``.  A consumer that writes
    something after the blob (a MIME boundary, a rename) learns of a bad blob
    before it has finished."""
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        digest.update(chunk)
        total += len(chunk)
        yield chunk
    if size is not None and total != size:
        raise BlobCorrupt(f"blob {sha256}: {total} bytes stored, {size} recorded")
    if digest.hexdigest() != sha256:
        raise BlobCorrupt(f"blob {sha256}: the stored bytes do not match their sha256")


class BlobReader:
    """An open blob: ``size``, then its chunks (iterate once); a context
    manager that releases what reading holds (a file, a connection)."""

    def __init__(self, sha256: str, size: int, chunks: Iterator[bytes], close: Callable[[], None] = lambda: None):
        self.sha256 = sha256
        self.size = size
        self._chunks = chunks
        self._close = close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def read(self) -> bytes:
        """All of it (tests, small blobs): for large ones, iterate."""
        return b"".join(self._chunks)

    def close(self) -> None:
        close, self._close = self._close, lambda: None
        getattr(self._chunks, "close", lambda: None)()
        close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Blob:
    """A stored blob, opened only when iterated (again on every iteration,
    so a mail that must be written twice reads it twice); the chunks are
    checked against ``sha256`` and ``size`` as they go (``verified``)."""

    sha256: str
    size: int
    opener: Callable[[str], BlobReader]

    def __iter__(self) -> Iterator[bytes]:
        with self.opener(self.sha256) as reader:
            yield from verified(reader, self.sha256, self.size)

    def read(self) -> bytes:
        return b"".join(self)


class BlobBackend(abc.ABC):
    """The interface of a place that keeps blobs."""

    name: str  # "database" | "directory", as [store] blobs says

    @abc.abstractmethod
    def put(self, data: bytes | bytearray | memoryview, conn: Connection | None = None) -> str:
        """Store ``data`` (once: nothing happens when it is there); its sha256."""

    @abc.abstractmethod
    def put_stream(self, chunks: Iterable[bytes], sha256: str, conn: Connection | None = None) -> int:
        """Store the bytes of ``chunks``, which must have SHA-256 ``sha256``
        (BlobCorrupt otherwise, and nothing is kept); their size."""

    @abc.abstractmethod
    def open(self, sha256: str, conn: Connection | None = None) -> BlobReader:
        """The blob for reading in chunks; BlobMissing when it is not here."""

    @abc.abstractmethod
    def size(self, sha256: str, conn: Connection | None = None) -> int | None:
        """Its size in bytes, None when it is not here."""

    def exists(self, sha256: str, conn: Connection | None = None) -> bool:
        return self.size(sha256, conn) is not None

    @abc.abstractmethod
    def delete(self, sha256: str, conn: Connection | None = None) -> bool:
        """Remove it (with ``conn``: when that transaction commits); whether it was here.

        No reference check: ``Store.delete_blob`` makes that."""

    @abc.abstractmethod
    def location(self, sha256: str) -> str:
        """What ``attachments.path`` records for it ("" when it is no file)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the blobs are, for messages and ``postdesk check``."""

    @abc.abstractmethod
    def check_readable(self) -> None:
        """Raise (with a message fit for ``postdesk check``) unless this
        process can read and write here."""

    @contextlib.contextmanager
    def reading(self, sha256: str, conn: Connection | None = None) -> Iterator[Iterator[bytes]]:
        """``open`` as a context manager yielding verified chunks."""
        with self.open(sha256, conn) as reader:
            yield verified(reader, sha256, reader.size)
