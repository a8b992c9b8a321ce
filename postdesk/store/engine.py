"""Create SQLAlchemy engines for SQLite and PostgreSQL, set up for postdesk.

SQLite (the embedded default):

* WAL journal, so the notifier and ``postdesk ticket ...`` read while the
  milter writes.
* ``busy_timeout`` from ``[store] busy_timeout``: a writer waits that long
  for the lock, then fails with "database is locked", which the store turns
  into ``StoreUnavailable`` (Postfix gets 451 / exit 75 and retries).
* ``foreign_keys=ON`` (SQLite leaves them off by default).
* ``BEGIN IMMEDIATE`` for write transactions.  pysqlite's own implicit
  transactions start DEFERRED: a transaction that reads first and writes
  later must then upgrade its lock, and in WAL mode that upgrade fails at
  once with SQLITE_BUSY (no busy wait) when another writer committed in
  between.  Taking the write lock at BEGIN makes writers queue on the
  busy_timeout instead.  This is the "isolation_level=None + begin event"
  recipe of the SQLAlchemy SQLite dialect documentation ("Serializable
  isolation / Savepoints / Transactional DDL").
  Read-only work (``READ_ONLY`` execution option) uses a plain ``BEGIN``.
* Runtime engines open the file with ``mode=rw``: a missing database is an
  error pointing at ``postdesk init``, not a fresh empty file.

PostgreSQL (psycopg 3): ``pool_pre_ping`` so a restarted server costs one
failed ping rather than one failed message; ``connect_timeout`` and
``lock_timeout`` bounded by busy_timeout, so nothing waits for ever.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

# Execution option: this transaction only reads (SQLite: deferred BEGIN).
READ_ONLY = "postdesk_read_only"


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL, None for other URLs and :memory:."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    if not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str, busy_timeout: float = 10.0, *, create: bool = False) -> Engine:
    """An engine for ``url``.  ``create``: SQLite may create the file (init)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout, create)
    return _pg_engine(url, busy_timeout)


def _sqlite_engine(url: str, busy_timeout: float, create: bool) -> Engine:
    path = sqlite_path(url)
    if path is None:
        raise ValueError(f"{url}: an in-memory SQLite database cannot be shared; use sqlite:///PATH")
    mode = "rwc" if create else "rw"
    uri = f"file:{quote(str(path.absolute()))}?mode={mode}"

    def connect() -> sqlite3.Connection:
        # isolation_level=None: pysqlite emits no BEGIN of its own; the
        # "begin" event below does.  timeout is sqlite3's busy handler.
        return sqlite3.connect(
            uri,
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,  # the pool hands connections between threads
        )

    engine = create_engine(url, creator=connect)
    ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {ms}")
            if create:
                # Persistent in the file: set once at init, kept afterwards.
                cur.execute("PRAGMA journal_mode = WAL")
            else:
                # Not while migrating: Alembic's batch mode copies and drops
                # tables, which enforced foreign keys would cascade or refuse
                # (Alembic docs, "Dealing with Constraints" in batch mode).
                cur.execute("PRAGMA foreign_keys = ON")
            # FULL: a message Postfix was told is accepted survives power
            # loss (NORMAL in WAL may lose the last commits).
            cur.execute("PRAGMA synchronous = FULL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _pg_engine(url: str, busy_timeout: float) -> Engine:
    engine = create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": max(1, int(round(busy_timeout)))},
    )
    ms = max(1, int(busy_timeout * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Like SQLite's busy_timeout: a writer blocked on a row lock (the
        # ticket counter, a ticket row) gives up and the message is retried.
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"SET lock_timeout = {ms}")
        finally:
            cur.close()
        dbapi_connection.commit()

    return engine
