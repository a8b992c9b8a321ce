"""The Store: one database + a blob backend, one transaction per message.

``record`` is what ``postdesk.ingest`` calls for every message: it opens a
write transaction, hands the filter a ``Known`` view on it, applies the
Decision and commits.  Transient failures raise ``StoreUnavailable`` (cause
chained) and leave nothing behind; a second delivery of a message already
recorded (even one racing the first) returns DUPLICATE.

Attachment bytes go through ``self.blobs`` (``postdesk.store.blobs``:
database rows or files, by ``[store] blobs``), written in the message's
transaction.  Reading falls back to the other backend, so attachments not
yet moved by ``postdesk blobs migrate`` stay readable after the setting
changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from postdesk.outcomes import Outcome, Result
from postdesk.store.admin import AdminMixin
from postdesk.store.apply import TICKET_COUNTER, apply, existing_ticket_number
from postdesk.store.blobs import AFTER_COMMIT, Blob, BlobBackend, BlobInUse, BlobMissing, BlobReader, DatabaseBlobs, DirectoryBlobs, blob_path, resolve
from postdesk.store.engine import READ_ONLY, make_engine, sqlite_path
from postdesk.store.errors import INIT_HINT, StoreNotInitialised, StoreUnavailable, unavailable_on_failure
from postdesk.store.models import Attachment, Counter, MessageId, Setting
from postdesk.store.text import message_key
from postdesk.store.view import KnownView

if TYPE_CHECKING:
    from postdesk.config import Config
    from postdesk.filter.decision import Decision, Envelope, Known

log = logging.getLogger("postdesk.store")

_SETTINGS = Setting.__table__
_KEYS = MessageId.__table__
_ATTACHMENTS = Attachment.__table__

SECRET = "msgid_secret"
ATTEMPTS = 3  # a lost race on a unique row (a new person) is retried this often
# PostgreSQL serialization_failure, deadlock_detected: retry the message.
RETRY_SQLSTATES = {"40001", "40P01"}


class Store(AdminMixin):
    def __init__(self, url: str, attachments: str | os.PathLike, busy_timeout: float = 10.0, blobs: str = "auto"):
        """``blobs``: ``[store] blobs`` ("auto": database on PostgreSQL,
        directory on SQLite)."""
        self.url = url
        self.attachments = Path(attachments)
        self.busy_timeout = float(busy_timeout)
        self.engine: Engine = make_engine(url, self.busy_timeout)
        self._read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self._secret: bytes | None = None
        backends: dict[str, BlobBackend] = {"database": DatabaseBlobs(self.engine), "directory": DirectoryBlobs(self.attachments)}
        name = resolve(blobs, url)
        self.blobs: BlobBackend = backends.pop(name)
        # Where attachments were kept before [store] blobs changed: read
        # from there until `postdesk blobs migrate` has moved them.
        self.other_blobs: BlobBackend = backends.popitem()[1]

    @classmethod
    def from_config(cls, config: Config) -> Store:
        return cls(config.store.url, config.store.attachments, config.store.busy_timeout, config.store.blobs)

    @classmethod
    def for_service(cls, config: Config) -> Store | None:
        """The store of a resident service (the milter, the LMTP server), or
        None after one ERROR line: the service then exits 78 (EX_CONFIG).

        A store that cannot even be set up (a bad URL, a missing driver) is
        a config problem; one that is merely down is not: nothing connects
        here, and the service starts and answers 451 until it is back.
        """
        from postdesk.config import redact_url

        try:
            return cls.from_config(config)
        except Exception as e:
            log.error("cannot set up the store %s: %s", redact_url(config.store.url), e)
            return None

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # --- sessions ------------------------------------------------------------

    def _check_exists(self) -> None:
        path = sqlite_path(self.url)
        if path is not None and not path.exists():
            raise StoreNotInitialised(f"database {path} does not exist; {INIT_HINT}")

    @contextlib.contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on
        error.  Transient failures raise StoreUnavailable (cause chained).
        SQLite: write transactions start with BEGIN IMMEDIATE."""
        with unavailable_on_failure("store"):
            self._check_exists()
            with Session(self._read_engine if read_only else self.engine, expire_on_commit=False) as s:
                with s.begin():
                    yield s

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """``session()`` for the per-message path: a bare connection in one
        write transaction (BEGIN IMMEDIATE on SQLite), no ORM session."""
        with unavailable_on_failure("store"):
            self._check_exists()
            after: list[Callable[[], None]] = []
            with self.engine.begin() as conn:
                # What must wait for the commit (a blob file's removal).
                conn.info[AFTER_COMMIT] = after
                try:
                    yield conn
                finally:
                    conn.info.pop(AFTER_COMMIT, None)
        for action in after:
            action()

    # --- init ----------------------------------------------------------------

    def init(self, first_ticket_number: int = 1000) -> None:
        """Create or upgrade the schema (Alembic upgrade head), the attachment
        directory, the Message-ID secret and the ticket counter.  Idempotent."""
        from postdesk.store import migrate  # alembic: only here, never on the pipe path

        with unavailable_on_failure("init"):
            path = sqlite_path(self.url)
            if path is not None and not path.parent.is_dir():
                raise StoreUnavailable(f"init: directory {path.parent} does not exist (create it, owned by the postdesk user)")
            if path is not None:
                # Private whatever the umask: the database holds the HMAC
                # secret of our Message-IDs and customers' mail.  Created
                # 0600 before SQLite opens it (no window at 0644); SQLite
                # gives its -wal and -shm files the database's mode.
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                except FileExistsError:
                    pass
                for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                    if p.exists():
                        os.chmod(p, 0o600)
            engine = make_engine(self.url, self.busy_timeout, create=True)
            try:
                migrate.upgrade(engine)
            finally:
                engine.dispose()
            # 0750: the service user writes, its group (admins) may read.
            self.attachments.mkdir(mode=0o750, parents=True, exist_ok=True)
            os.chmod(self.attachments, 0o750)
            with self.session() as s:
                if s.get(Setting, SECRET) is None:
                    s.add(Setting(name=SECRET, value=os.urandom(32)))
                if s.get(Counter, TICKET_COUNTER) is None:
                    s.add(Counter(name=TICKET_COUNTER, value=int(first_ticket_number) - 1))

    # --- the secret ----------------------------------------------------------

    def _load_secret(self, conn: Connection | Session) -> bytes:
        if self._secret is None:
            value = conn.execute(select(_SETTINGS.c.value).where(_SETTINGS.c.name == SECRET)).scalar()
            if value is None:
                raise StoreNotInitialised(f"the database has no Message-ID secret; {INIT_HINT}")
            self._secret = bytes(value)
        return self._secret

    def secret(self) -> bytes:
        """Key of the HMAC token in our Message-IDs (postdesk.msgid)."""
        if self._secret is None:
            with self.session(read_only=True) as s:
                self._load_secret(s.connection())
        assert self._secret is not None
        return self._secret

    def attachment_path(self, sha256: str) -> Path:
        """Where the directory backend keeps (or would keep) this blob."""
        return blob_path(self.attachments, sha256)

    # --- blobs ---------------------------------------------------------------

    def open_blob(self, sha256: str) -> BlobReader:
        """An attachment's bytes for reading in chunks (a context manager):
        from the configured backend, else from the other one; BlobMissing
        when neither has it.  Database trouble raises StoreUnavailable."""
        try:
            return self.blobs.open(sha256)
        except BlobMissing:
            try:
                return self.other_blobs.open(sha256)
            except BlobMissing:
                raise BlobMissing(f"blob {sha256}: in neither {self.blobs.describe()} nor {self.other_blobs.describe()}") from None

    def blob(self, sha256: str) -> Blob:
        """The blob, opened (and checked against its sha256) only when
        iterated: what the notifier streams into a mail."""
        for backend in (self.blobs, self.other_blobs):
            size = backend.size(sha256)
            if size is not None:
                return Blob(sha256, size, self.open_blob)
        raise BlobMissing(f"blob {sha256}: in neither {self.blobs.describe()} nor {self.other_blobs.describe()}")

    def delete_blob(self, sha256: str, conn: Connection | None = None) -> bool:
        """Delete a blob from both backends; whether either had it.

        Refuses (BlobInUse) while an attachment row references it.  With
        ``conn`` it runs in the caller's transaction (a purge deleting
        tickets and then their blobs): the database rows go with that
        transaction, a file when it commits.  The blob row is locked first
        (``FOR UPDATE``), so a message reusing the same bytes concurrently
        either commits first (and its reference is seen) or writes them
        anew after this transaction."""
        if conn is None:
            with self._write() as own:
                return self._delete_blob(own, sha256)
        return self._delete_blob(conn, sha256)

    def _delete_blob(self, conn: Connection, sha256: str) -> bool:
        database = self.blobs if isinstance(self.blobs, DatabaseBlobs) else self.other_blobs
        assert isinstance(database, DatabaseBlobs)
        database.lock(conn, sha256)
        refs = conn.execute(select(func.count()).select_from(_ATTACHMENTS).where(_ATTACHMENTS.c.sha256 == sha256)).scalar_one()
        if refs:
            raise BlobInUse(f"blob {sha256}: {refs} attachment{'s' if refs != 1 else ''} still reference it")
        deleted = [backend.delete(sha256, conn) for backend in (self.blobs, self.other_blobs)]
        return any(deleted)

    # --- one message ---------------------------------------------------------

    def record(
        self,
        decide: Callable[[Known], Decision],
        envelope: Envelope,
        config: Config,
        now: datetime,
    ) -> Result:
        """Decide and apply in ONE transaction; see the module docstring."""

        last: Exception | None = None
        for attempt in range(ATTEMPTS):
            decision: Decision | None = None
            try:
                with self._write() as conn:
                    # Also proves the schema exists before anything is decided.
                    self._load_secret(conn)
                    decision = decide(KnownView(conn, self.secret))
                    return apply(conn, decision, envelope, config, now, self.blobs)
            except sa_exc.IntegrityError as e:
                # Rolled back.  If the message key is there now, another
                # delivery of this message won the race: a duplicate.
                last = e
                if decision is None:
                    raise
                if decision.message_key:
                    found, number = self._key_owner(decision.message_key, decision.digest)
                    if found:
                        return Result(Outcome.DUPLICATE, ticket=number, decision=decision)
                # Lost a race on another unique row (the same new person
                # added by two messages at once): decide and apply again.
                log.info("store: retrying after a lost race (%s)", str(e.orig).splitlines()[0] if e.orig else e)
            except StoreUnavailable as e:
                cause = e.__cause__
                state = getattr(getattr(cause, "orig", None), "sqlstate", None)
                if state in RETRY_SQLSTATES and attempt + 1 < ATTEMPTS:
                    last = e
                    continue
                raise
        raise StoreUnavailable(f"store: gave up after {ATTEMPTS} attempts: {last}") from last

    def record_batch(self, items: list[tuple[Callable[[Known], Decision], Envelope, Config, datetime]], done: Callable[[int], None] | None = None) -> list[Result]:
        """Decide and apply several messages in ONE transaction, in order.

        ``postdesk.store.groupcommit`` calls it with the messages waiting at
        once: they share a BEGIN, a COMMIT and its fsync, and each sees the
        ones before it (the same connection), as if recorded one by one.
        ``done(i)`` is called after message ``i`` is applied (for timing).
        All or nothing: on any error the whole transaction is rolled back
        and the exception propagates; the caller then records the messages
        one by one (``record``), where a lost race becomes a DUPLICATE.
        """
        results: list[Result] = []
        with self._write() as conn:
            self._load_secret(conn)
            for i, (decide, envelope, config, now) in enumerate(items):
                decision = decide(KnownView(conn, self.secret))
                results.append(apply(conn, decision, envelope, config, now, self.blobs))
                if done is not None:
                    done(i)
        return results

    def _key_owner(self, key: str, digest: str) -> tuple[bool, int | None]:
        """Is this message (key and content digest) recorded, and on which ticket."""
        with self.session(read_only=True) as s:
            conn = s.connection()
            where = (_KEYS.c.key == message_key(key), _KEYS.c.digest == digest)
            if conn.execute(select(_KEYS.c.id).where(*where)).first() is None:
                return False, None
            return True, existing_ticket_number(conn, key, digest)
