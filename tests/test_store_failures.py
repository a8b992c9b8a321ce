"""Transient failures become StoreUnavailable (cause chained), and nothing is
half-written: locked SQLite, unreachable PostgreSQL, a blob that cannot be
written, a database nobody initialised."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys

import pytest
from conftest import need
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from test_store_support import attachment, new, record

from postdesk.store import Store, StoreUnavailable
from postdesk.store.errors import StoreNotInitialised
from postdesk.store.models import MessageId, Ticket


def test_uninitialised_sqlite_file_is_not_created(make_config, tmp_path):
    cfg = make_config(f"sqlite:///{tmp_path}/nope.db")
    store = Store.from_config(cfg)
    with pytest.raises(StoreUnavailable, match="postdesk init") as ei:
        record(store, new(), cfg)
    assert isinstance(ei.value, StoreNotInitialised)
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(StoreUnavailable, match="postdesk init"):
        store.list_tickets()
    store.close()


def test_uninitialised_database_without_tables(make_config, store_url, tmp_path):
    if store_url.startswith("sqlite"):
        sqlite3.connect(tmp_path / "postdesk.db").close()  # an empty file
    cfg = make_config(store_url)
    store = Store.from_config(cfg)
    with pytest.raises(StoreUnavailable, match="postdesk init") as ei:
        record(store, new(), cfg)
    assert ei.value.__cause__ is not None
    store.close()


def test_init_refuses_a_missing_directory(make_config, tmp_path):
    cfg = make_config(f"sqlite:///{tmp_path}/no/such/dir/postdesk.db")
    with pytest.raises(StoreUnavailable, match="does not exist"):
        Store.from_config(cfg).init()
    assert not (tmp_path / "no").exists()


def test_locked_sqlite_is_unavailable(make_config, tmp_path):
    cfg = make_config(store={"busy_timeout": 0.3})
    store = Store.from_config(cfg)
    store.init()
    holder = sqlite3.connect(tmp_path / "postdesk.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        with pytest.raises(StoreUnavailable, match="locked") as ei:
            record(store, new(), cfg)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(ei.value.__cause__, sa_exc.OperationalError)
    # The wait is SQLite's busy handler, bounded by [store] busy_timeout
    # (not for ever, not zero); how long it takes is not this test's business.
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 300
    # Once the lock is gone the same message goes through.
    assert record(store, new(), cfg).ticket == 1000
    store.close()


def test_sqlite_readers_do_not_block_on_a_writer(make_config, tmp_path):
    """WAL + deferred BEGIN for reads: `ticket list` works while the milter
    holds the write lock."""
    cfg = make_config(store={"busy_timeout": 0.2})
    store = Store.from_config(cfg)
    store.init()
    record(store, new(), cfg)
    holder = sqlite3.connect(tmp_path / "postdesk.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert [t["number"] for t in store.list_tickets()] == [1000]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with sqlite3.connect(tmp_path / "postdesk.db") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_postgresql_is_unavailable(make_config, tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/test"
    cfg = make_config(url, store={"busy_timeout": 1.0})
    store = Store.from_config(cfg)
    with pytest.raises(StoreUnavailable) as ei:
        record(store, new(), cfg)
    assert isinstance(ei.value.__cause__, sa_exc.OperationalError)
    with pytest.raises(StoreUnavailable):
        store.init()
    store.close()


def test_blob_write_failure_is_unavailable_and_writes_nothing(make_config, store_url):
    cfg = make_config(store_url, store={"blobs": "directory"})  # a disk that fails
    store = Store.from_config(cfg)
    store.init()
    data = b"some attachment bytes"
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    # A file where the fan-out directory should be: mkdir fails with an
    # OSError, as it would on a full or read-only disk.
    (store.attachments / sha[:2]).write_bytes(b"")
    with pytest.raises(StoreUnavailable) as ei:
        record(store, new(attachments=(attachment(data),)), cfg)
    assert isinstance(ei.value.__cause__, OSError)
    with store.session(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0
        assert s.scalar(select(func.count()).select_from(MessageId)) == 0
    (store.attachments / sha[:2]).unlink()
    assert record(store, new(attachments=(attachment(data),)), cfg).ticket == 1000
    store.close()


def test_bugs_are_not_disguised_as_unavailable(make_config, store_url):
    cfg = make_config(store_url)
    store = Store.from_config(cfg)
    store.init()

    def decide(known):
        raise ZeroDivisionError("a bug in the filter")

    with pytest.raises(ZeroDivisionError):
        store.record(decide, None, cfg, None)
    store.close()


def test_store_import_stays_light():
    """The pipe path imports the store but must not pull in alembic or pymilter."""
    code = "import sys, postdesk.store; sys.exit(any(m in sys.modules for m in ('alembic', 'Milter', 'milter')))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_postgresql_row_lock_past_busy_timeout_is_unavailable(make_config, pg_url):
    """The PostgreSQL twin of a locked SQLite: another transaction holds the
    ticket counter; lock_timeout (= busy_timeout) ends the wait."""
    import sqlalchemy

    cfg = make_config(pg_url, store={"busy_timeout": 0.5})
    store = Store.from_config(cfg)
    store.init()
    holder = sqlalchemy.create_engine(pg_url)
    with holder.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT value FROM counters FOR UPDATE"))
        with pytest.raises(StoreUnavailable) as ei:
            record(store, new(), cfg)
        conn.rollback()
    holder.dispose()
    assert isinstance(ei.value.__cause__, sa_exc.OperationalError)
    # Ended by lock_timeout (= busy_timeout), not by a statement timeout or a dead connection.
    assert "lock timeout" in str(ei.value.__cause__)
    with store.engine.connect() as c:
        assert c.exec_driver_sql("SHOW lock_timeout").scalar() == "500ms"
    assert record(store, new(), cfg).ticket == 1000
    store.close()


def test_sqlite_foreign_keys_are_enforced(make_config):
    from test_store_support import T0

    from postdesk.store.models import Outbox

    cfg = make_config()
    store = Store.from_config(cfg)
    store.init()
    with pytest.raises(sa_exc.IntegrityError, match="FOREIGN KEY"):
        with store.session() as s:
            s.add(Outbox(kind="ack", ticket_id=12345, recipient="x@example.org", state="queued", due_at=T0, created_at=T0))
    store.close()


def test_schema_older_than_the_code_names_postdesk_init(make_config, store_url):
    """A column the code expects is missing (code upgraded, `postdesk init`
    not run yet): a temporary failure that says what to do."""
    import sqlalchemy

    cfg = make_config(store_url)
    store = Store.from_config(cfg)
    store.init()
    with store.engine.begin() as conn:
        conn.execute(sqlalchemy.text("ALTER TABLE actions DROP COLUMN delivered_to"))
    with pytest.raises(StoreUnavailable, match="postdesk init"):
        record(store, new(), cfg)
    store.close()


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (needs root: skipped elsewhere), unmounted afterwards."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    need(r.returncode == 0, f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_is_unavailable(make_config, store_url, tiny_fs):
    import errno

    cfg = make_config(store_url, store={"attachments": str(tiny_fs / "attachments"), "blobs": "directory"})
    store = Store.from_config(cfg)
    store.init()
    big = bytes(range(256)) * 1024  # 256 KiB > 64 KiB
    with pytest.raises(StoreUnavailable) as ei:
        record(store, new(attachments=(attachment(b"small"), attachment(big))), cfg)
    assert isinstance(ei.value.__cause__, OSError) and ei.value.__cause__.errno == errno.ENOSPC
    assert not [p for p in tiny_fs.rglob(".tmp-*")]  # the partial file is gone
    with store.session(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0
    assert record(store, new(attachments=(attachment(b"small"),)), cfg).ticket == 1000
    store.close()
