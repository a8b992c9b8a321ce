"""Attachment bytes on disk, named by their SHA-256.

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

Removal (``postdesk purge``, ``unlink_unused``) races with a message that
needs the same bytes again: it may find the file, skip writing it, and
commit its row after the purge decided the blob was unused.  So a blob in
use is touched (its mtime set) whenever a message reuses it, and removal
first renames the file aside, then keeps it (renamed back) if it was touched
within ``GRACE`` or a row references it again; a message that looks for
the file after the rename writes it anew.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger("postdesk.store")

_HEX64 = re.compile(r"[0-9a-f]{64}")
# A blob touched this recently (seconds) is never removed: far longer than
# any transaction lives (the store's busy_timeout is seconds).
GRACE = 3600.0


def relative_path(sha256: str) -> str:
    if not _HEX64.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
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
            d.mkdir(mode=0o750)
        except FileExistsError:
            continue  # another thread made it meanwhile
        os.chmod(d, 0o750)


def write_blob(root: Path, data: bytes) -> tuple[str, str]:
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
    _make_dirs(final.parent)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)  # mkstemp makes 0600; the group (admins) may read
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(final.parent)
    return sha, rel


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
            log.warning("purge: cannot remove blob %s: %s", sha, e.strerror)
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
