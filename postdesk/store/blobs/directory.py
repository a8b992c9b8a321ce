"""Blobs as files in ``[store] attachments``, named by their SHA-256 (one host).

Layout: ``<attachments>/ab/cd/<sha256>`` (two levels of fan-out keep
directories small).  The sender's filename is metadata in the database only
and never part of a path, so no name can escape the directory or clobber
another file.  Identical content is stored once.

A file is written to a temporary name in its final directory, fsynced,
then renamed over the final name with ``os.replace`` (atomic on POSIX within
one file system), and the directory is fsynced, so a reader never sees a
partial file and a crash leaves either nothing or the whole file.  Blobs are
written before the database commit: a committed row always has its bytes; a
rolled-back message may leave an unreferenced blob, which is harmless.
Files are 0640 and directories 0750 whatever the umask (chmod, which the
umask does not mask).

Deleting inside a caller's transaction (``conn``) waits for that
transaction: the file goes after it has committed (``Store._write`` runs
the removal then; for another connection, at SQLAlchemy's "commit" event,
just before the database's own COMMIT) and stays when it rolls back.

Removal races with a message that needs the same bytes again: it may find
the file, skip writing it, and commit its row after the deleting
transaction decided the blob was unused.  So a message reusing a file
touches it (sets its mtime), and removal (``unlink_unused``) first renames
the file aside, then puts it back if it was touched within ``GRACE``; a
message that looks for the file after the rename writes it anew.  Files
kept that way are listed in ``<attachments>/.purge-pending`` for a later
``postdesk purge`` to look at again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event

from postdesk.store.blobs.common import AFTER_COMMIT, CHUNK, BlobBackend, BlobCorrupt, BlobMissing, BlobReader, check_sha256, chunks_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

log = logging.getLogger("postdesk.store")

# A file touched this recently (seconds) is never removed: far longer than
# any transaction lives (the store's busy_timeout is seconds).
GRACE = 3600.0
PENDING_FILE = ".purge-pending"
FILE_MODE = 0o640  # the service user writes, its group (admins) may read
DIR_MODE = 0o750


def relative_path(sha256: str) -> str:
    check_sha256(sha256)
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def blob_path(root: Path, sha256: str) -> Path:
    return Path(root) / relative_path(sha256)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> None:
    """The fan-out directories, 0750 whatever the umask (mkdir's mode is
    masked by it; chmod is not)."""
    missing = []
    d = directory
    while not d.is_dir() and d != d.parent:
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another thread made it meanwhile
        os.chmod(d, DIR_MODE)


def _write_file(final: Path, chunks: Iterable[bytes | memoryview], sha256: str | None) -> tuple[str, int]:
    """Write ``chunks`` to ``final`` atomically; (sha256, size).  With
    ``sha256`` given, BlobCorrupt (and no file) unless the bytes match."""
    _make_dirs(final.parent)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        if sha256 is not None and digest.hexdigest() != sha256:
            raise BlobCorrupt(f"blob {sha256}: the bytes given do not match their sha256")
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(final.parent)
    return digest.hexdigest(), size


def write_blob(root: Path, data: bytes | bytearray | memoryview) -> tuple[str, str]:
    """Store ``data``; returns (sha256, path relative to root).

    Raises OSError (disk full, permissions); the store maps it to
    StoreUnavailable.
    """
    sha = hashlib.sha256(data).hexdigest()
    rel = relative_path(sha)
    final = Path(root) / rel
    if final.exists() and final.stat().st_size == len(data):
        try:
            os.utime(final)  # in use again: see the module docstring
            return sha, rel
        except FileNotFoundError:
            pass  # removed meanwhile: write it again
    _write_file(final, chunks_of(data), None)
    return sha, rel


class DirectoryBlobs(BlobBackend):
    name = "directory"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"DirectoryBlobs({str(self.root)!r})"

    def path(self, sha256: str) -> Path:
        return blob_path(self.root, sha256)

    def put(self, data: bytes | bytearray | memoryview, conn: Connection | None = None) -> str:
        return write_blob(self.root, data)[0]

    def put_stream(self, chunks: Iterable[bytes], sha256: str, conn: Connection | None = None) -> int:
        final = self.path(sha256)
        return _write_file(final, chunks, sha256)[1]

    def size(self, sha256: str, conn: Connection | None = None) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, sha256: str, conn: Connection | None = None) -> BlobReader:
        try:
            f = open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise BlobMissing(f"blob {sha256}: no file {self.path(sha256)}") from None
        size = os.fstat(f.fileno()).st_size

        def chunks() -> Iterator[bytes]:
            while chunk := f.read(CHUNK):
                yield chunk

        return BlobReader(sha256, size, chunks(), f.close)

    def delete(self, sha256: str, conn: Connection | None = None) -> bool:
        path = self.path(sha256)
        if conn is None:
            return _unlink(path)
        here = path.exists()

        def remove() -> None:
            try:
                _gone, recent = unlink_unused(self.root, {sha256}, lambda _sha: False)
                remember(self.root, recent)
            except OSError as e:
                log.warning("blob %s: not removed: %s", sha256, e)

        after = conn.info.get(AFTER_COMMIT)
        if after is not None:
            after.append(remove)  # Store._write: once committed
            return here
        # After the caller's transaction decides: the file goes with a
        # commit, stays with a rollback (whichever comes first, once).
        state = {"done": False}

        def on_commit(_conn) -> None:
            if not state["done"]:
                state["done"] = True
                remove()

        def on_rollback(_conn) -> None:
            state["done"] = True

        event.listen(conn, "commit", on_commit, once=True)
        event.listen(conn, "rollback", on_rollback, once=True)
        return here

    def location(self, sha256: str) -> str:
        return relative_path(sha256)

    def describe(self) -> str:
        return f"directory {self.root}"

    def check_readable(self) -> None:
        if not self.root.is_dir():
            raise BlobMissing(f"{self.root} does not exist (postdesk init creates it)")
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise PermissionError(f"{self.root}: this user cannot read and write it")


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def unlink_unused(root: Path, shas: Iterable[str], referenced: Callable[[str], bool], grace: float = GRACE) -> tuple[int, set[str]]:
    """Remove the files of ``shas``, which no committed row referenced,
    unless ``referenced`` says a row names one again, or a message touched
    it within ``grace`` seconds.  Returns how many files went, and the
    shas kept only for being recent (to try again later).  A missing file
    is no error (removed before, or never written)."""
    gone = 0
    recent: set[str] = set()
    for sha in sorted(set(shas)):
        final = blob_path(root, sha)
        aside = final.with_name(f".purge-{sha}")
        try:
            os.replace(final, aside)
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("blob %s: cannot remove it: %s", sha, e.strerror)
            continue
        try:
            if referenced(sha):
                os.replace(aside, final)  # a fresh copy written meanwhile has the same bytes
                continue
            if aside.stat().st_mtime > time.time() - grace:
                os.replace(aside, final)
                recent.add(sha)
                continue
            os.unlink(aside)
            gone += 1
        except BaseException:
            if aside.exists():
                os.replace(aside, final)
            raise
    return gone, recent


def pending(root: Path) -> set[str]:
    """The blobs a removal kept for being recent (``PENDING_FILE``)."""
    try:
        return {w for w in (Path(root) / PENDING_FILE).read_text().split() if len(w) == 64}
    except FileNotFoundError:
        return set()


def save_pending(root: Path, shas: set[str]) -> None:
    path = Path(root) / PENDING_FILE
    if not shas:
        path.unlink(missing_ok=True)
        return
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{sha}\n" for sha in sorted(shas)))
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def remember(root: Path, shas: set[str]) -> None:
    """Add ``shas`` to the pending list (a later purge looks again)."""
    if shas and Path(root).is_dir():
        save_pending(root, pending(root) | shas)
