"""Attachment bytes ("blobs"), content-addressed by SHA-256, in one of two places.

``[store] blobs`` picks the backend: ``database`` keeps them in the store's
own tables (``blobs``, ``blob_chunks``), so every host on one PostgreSQL
reads every attachment; ``directory`` keeps them as files in ``[store]
attachments`` (one host); ``auto`` is database on PostgreSQL and directory
on SQLite.  Modules: common (the interface, chunking, verification),
directory, database, migrate (``postdesk blobs migrate``).
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from postdesk.store.blobs.common import (
    AFTER_COMMIT,
    CHUNK,
    Blob,
    BlobBackend,
    BlobCorrupt,
    BlobError,
    BlobInUse,
    BlobMissing,
    BlobReader,
)
from postdesk.store.blobs.database import DatabaseBlobs
from postdesk.store.blobs.directory import DirectoryBlobs, blob_path, relative_path, unlink_unused, write_blob

BACKENDS = ("database", "directory")


def resolve(setting: str, url: str) -> str:
    """``[store] blobs`` as it applies to the store at ``url``: "database" or "directory"."""
    if setting == "auto":
        return "database" if make_url(url).get_backend_name() == "postgresql" else "directory"
    if setting not in BACKENDS:
        raise ValueError(f"blobs must be auto, database or directory, not {setting!r}")
    return setting


__all__ = [
    "AFTER_COMMIT",
    "BACKENDS",
    "CHUNK",
    "Blob",
    "BlobBackend",
    "BlobCorrupt",
    "BlobError",
    "BlobInUse",
    "BlobMissing",
    "BlobReader",
    "DatabaseBlobs",
    "DirectoryBlobs",
    "blob_path",
    "relative_path",
    "resolve",
    "unlink_unused",
    "write_blob",
]
