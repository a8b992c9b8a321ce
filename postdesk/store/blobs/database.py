"""Blobs as rows of the store's own database (every host reads them).

``blobs`` (sha256, size, created_at) names a blob; ``blob_chunks`` (sha256,
seq, data) holds its bytes in ``CHUNK``-sized rows.  Writing inserts one
chunk per statement from views of the caller's bytes, and reading selects
one chunk per statement, so a 25 MB attachment is never whole in memory a
second time (and never in one driver buffer).

Written in the caller's transaction (``conn``): the message's, for the
milter and the pipe filter, so a rollback leaves no blob rows behind.  Two
messages carrying the same new bytes at once: the second's ``INSERT ... ON
CONFLICT DO NOTHING`` waits for the first transaction and then either finds
the row or, when the first rolled back, writes it itself.  An existing blob
is locked ``FOR SHARE`` (PostgreSQL) by the message that reuses it, so a
concurrent ``Store.delete_blob`` (``FOR UPDATE``) waits for that message,
then sees its new reference and refuses; on SQLite the database write lock
serialises both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, select
from sqlalchemy.engine import Connection, Engine

from postdesk.clock import utcnow
from postdesk.store.blobs.common import CHUNK, BlobBackend, BlobCorrupt, BlobMissing, BlobReader, check_sha256, chunks_of
from postdesk.store.engine import READ_ONLY
from postdesk.store.errors import unavailable_on_failure
from postdesk.store.models import BlobChunk, BlobRow

BLOBS = cast(Table, BlobRow.__table__)
CHUNKS = cast(Table, BlobChunk.__table__)

_SIZE = select(BLOBS.c.size).where(BLOBS.c.sha256 == bindparam("sha"))
_SHARE = select(BLOBS.c.sha256).where(BLOBS.c.sha256 == bindparam("sha")).with_for_update(read=True)
_CHUNK = select(CHUNKS.c.data).where(CHUNKS.c.sha256 == bindparam("sha"), CHUNKS.c.seq == bindparam("seq"))
_INSERT_CHUNK = CHUNKS.insert()
_DELETE_CHUNKS = delete(CHUNKS).where(CHUNKS.c.sha256 == bindparam("sha"))
_DELETE_BLOB = delete(BLOBS).where(BLOBS.c.sha256 == bindparam("sha"))


def _insert_blob(conn: Connection, sha256: str, size: int) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; whether this call inserted it."""
    # Imported here: the dialect in use is loaded already, the other one
    # need not be (postdesk filter starts once per message).
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as ins
    else:
        from sqlalchemy.dialects.sqlite import insert as ins  # type: ignore[assignment]
    values = {"sha256": sha256, "size": size, "created_at": utcnow()}
    # RETURNING, not rowcount: the drivers report -1 for this statement.
    stmt = ins(BLOBS).values(**values).on_conflict_do_nothing(index_elements=["sha256"]).returning(BLOBS.c.sha256)
    return conn.execute(stmt).first() is not None


class DatabaseBlobs(BlobBackend):
    name = "database"

    def __init__(self, engine: Engine):
        self.engine = engine
        self._read_engine = engine.execution_options(**{READ_ONLY: True})

    def __repr__(self) -> str:
        return "DatabaseBlobs()"

    # --- writing -------------------------------------------------------------

    def _claim(self, conn: Connection, sha256: str, size: int) -> bool:
        """True: the blob row is new here, write its chunks.  False: it is
        there already, and now locked against deletion until ``conn`` ends."""
        while True:
            if _insert_blob(conn, sha256, size):
                return True
            if conn.execute(_SHARE, {"sha": sha256}).first() is not None:
                return False
            # Deleted between the two statements (committed): insert again.

    def put(self, data: bytes | bytearray | memoryview, conn: Connection | None = None) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if conn is None:
            with unavailable_on_failure("blobs"), self.engine.begin() as c:
                self._put(c, sha, data)
        else:
            self._put(conn, sha, data)
        return sha

    def _put(self, conn: Connection, sha: str, data: bytes | bytearray | memoryview) -> None:
        if self._claim(conn, sha, len(data)):
            for seq, chunk in enumerate(chunks_of(data)):
                conn.execute(_INSERT_CHUNK, {"sha256": sha, "seq": seq, "data": chunk})

    def put_stream(self, chunks: Iterable[bytes], sha256: str, conn: Connection | None = None) -> int:
        check_sha256(sha256)
        if conn is None:
            with unavailable_on_failure("blobs"), self.engine.begin() as c:
                return self._put_stream(c, chunks, sha256)
        return self._put_stream(conn, chunks, sha256)

    def _put_stream(self, conn: Connection, chunks: Iterable[bytes], sha256: str) -> int:
        size = self.size(sha256, conn)
        if size is not None:
            return size
        # The size is known at the end; the row comes first (the chunks
        # reference it) and is corrected then, in the same transaction.
        if not self._claim(conn, sha256, 0):
            return self.size(sha256, conn) or 0
        digest = hashlib.sha256()
        total = seq = 0
        pending = bytearray()
        for piece in chunks:
            digest.update(piece)
            total += len(piece)
            pending += piece
            while len(pending) >= CHUNK:
                conn.execute(_INSERT_CHUNK, {"sha256": sha256, "seq": seq, "data": bytes(pending[:CHUNK])})
                del pending[:CHUNK]
                seq += 1
        if pending:
            conn.execute(_INSERT_CHUNK, {"sha256": sha256, "seq": seq, "data": bytes(pending)})
        if digest.hexdigest() != sha256:
            # The caller's transaction must not commit this: raise before it can.
            raise BlobCorrupt(f"blob {sha256}: the bytes given do not match their sha256")
        conn.execute(BLOBS.update().where(BLOBS.c.sha256 == sha256).values(size=total))
        return total

    # --- reading -------------------------------------------------------------

    def size(self, sha256: str, conn: Connection | None = None) -> int | None:
        if conn is not None:
            return conn.execute(_SIZE, {"sha": sha256}).scalar()
        with unavailable_on_failure("blobs"), self._read_engine.begin() as c:
            return c.execute(_SIZE, {"sha": sha256}).scalar()

    def open(self, sha256: str, conn: Connection | None = None) -> BlobReader:
        own = conn is None
        with unavailable_on_failure("blobs"):
            if own:
                conn = self._read_engine.connect()
                conn.begin()
            assert conn is not None
            try:
                size = conn.execute(_SIZE, {"sha": sha256}).scalar()
            except BaseException:
                if own:
                    conn.close()
                raise
        if size is None:
            if own:
                conn.close()
            raise BlobMissing(f"blob {sha256}: not in the database")
        reader_conn = conn

        def chunks() -> Iterator[bytes]:
            # One row per statement: never more than a chunk from the driver.
            seq = got = 0
            while got < size:
                with unavailable_on_failure("blobs"):
                    data = reader_conn.execute(_CHUNK, {"sha": sha256, "seq": seq}).scalar()
                if data is None:
                    raise BlobCorrupt(f"blob {sha256}: chunk {seq} is missing ({got} of {size} bytes read)")
                data = bytes(data)
                got += len(data)
                seq += 1
                yield data

        return BlobReader(sha256, size, chunks(), reader_conn.close if own else lambda: None)

    # --- deleting ------------------------------------------------------------

    def lock(self, conn: Connection, sha256: str) -> bool:
        """Lock the blob row against a message reusing it (``FOR UPDATE``;
        SQLite: the write lock does); whether it is here."""
        return conn.execute(select(BLOBS.c.sha256).where(BLOBS.c.sha256 == sha256).with_for_update()).first() is not None

    def delete(self, sha256: str, conn: Connection | None = None) -> bool:
        if conn is None:
            with unavailable_on_failure("blobs"), self.engine.begin() as c:
                return self._delete(c, sha256)
        return self._delete(conn, sha256)

    @staticmethod
    def _delete(conn: Connection, sha256: str) -> bool:
        conn.execute(_DELETE_CHUNKS, {"sha": sha256})
        return bool(conn.execute(_DELETE_BLOB, {"sha": sha256}).rowcount)

    # --- about ---------------------------------------------------------------

    def location(self, sha256: str) -> str:
        return ""

    def describe(self) -> str:
        return "database (tables blobs, blob_chunks)"

    def check_readable(self) -> None:
        with unavailable_on_failure("blobs"), self._read_engine.begin() as c:
            c.execute(select(func.count()).select_from(select(BLOBS.c.sha256).limit(1).subquery())).scalar()
