"""Attachment bytes in the database or in a directory (``postdesk.store.blobs``).

Both backends on SQLite and PostgreSQL: bytes round-trip in chunks, a
rolled-back message leaves no blob rows, reads fall back to the other
backend, a referenced blob is never deleted, corruption is caught, and
``postdesk blobs migrate`` moves everything either way, resumably.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
from cli_helpers import make_desk, make_mail
from sqlalchemy import func, select, update
from test_store_support import T0, attachment, new, record, staff_reply

from postdesk import check
from postdesk.notifier.worker import Worker
from postdesk.store import Store
from postdesk.store.blobs import CHUNK, BlobCorrupt, BlobInUse, BlobMissing, DirectoryBlobs
from postdesk.store.blobs.directory import GRACE
from postdesk.store.blobs.migrate import migrate
from postdesk.store.models import BlobChunk, BlobRow
from postdesk.testing.smtp import Sink

BIG = os.urandom(2 * CHUNK + 12345)  # three chunks, the last one short
BIG_SHA = hashlib.sha256(BIG).hexdigest()


def _store(make_config, store_url, blobs):
    cfg = make_config(store_url, store={"blobs": blobs})
    store = Store.from_config(cfg)
    store.init()
    return cfg, store


def _count(store, model) -> int:
    with store.session(read_only=True) as s:
        return s.scalar(select(func.count()).select_from(model))


def _files(store) -> list:
    return [p for p in store.attachments.rglob("*") if p.is_file()]


@pytest.mark.parametrize("blobs", ["database", "directory"])
def test_put_open_size_delete_round_trip(make_config, store_url, blobs):
    cfg, store = _store(make_config, store_url, blobs)
    backend = store.blobs
    assert backend.name == blobs
    assert backend.put(BIG) == BIG_SHA
    assert backend.put(BIG) == BIG_SHA  # stored once
    assert backend.size(BIG_SHA) == len(BIG) and backend.exists(BIG_SHA)
    with backend.open(BIG_SHA) as reader:
        chunks = list(reader)
    assert b"".join(chunks) == BIG and max(len(c) for c in chunks) <= CHUNK and len(chunks) == 3
    if blobs == "database":
        assert _count(store, BlobRow) == 1 and _count(store, BlobChunk) == 3
        assert _files(store) == []
    else:
        assert len(_files(store)) == 1
    # From a stream whose sha256 the caller names (as the migration does).
    other = b"x" * (CHUNK + 1)
    sha = hashlib.sha256(other).hexdigest()
    assert backend.put_stream(iter([other[:1000], other[1000:]]), sha) == len(other)
    assert store.blob(sha).read() == other
    with pytest.raises(BlobCorrupt):
        backend.put_stream(iter([b"not those bytes"]), "0" * 64)
    assert not backend.exists("0" * 64)
    assert backend.delete(BIG_SHA) and not backend.exists(BIG_SHA)
    assert not backend.delete(BIG_SHA)
    with pytest.raises(BlobMissing):
        store.open_blob(BIG_SHA)
    store.close()


def test_auto_is_database_on_postgresql_and_directory_on_sqlite(make_config, store_url):
    cfg, store = _store(make_config, store_url, "auto")
    expected = "database" if store_url.startswith("postgresql") else "directory"
    assert store.blobs.name == expected
    r = record(store, new(attachments=(attachment(BIG),)), cfg)
    (att,) = store.show_ticket(r.ticket)["actions"][0]["attachments"]
    assert att["sha256"] == BIG_SHA and att["size"] == len(BIG)
    assert store.attachment(att["id"])[1].read() == BIG
    assert bool(_files(store)) == (expected == "directory")
    assert _count(store, BlobRow) == (1 if expected == "database" else 0)
    store.close()


def test_database_blobs_roll_back_with_the_message(make_config, store_url, monkeypatch):
    cfg, store = _store(make_config, store_url, "database")
    with pytest.raises(RuntimeError):
        with store._write() as conn:
            store.blobs.put(BIG, conn)
            assert store.blobs.size(BIG_SHA, conn) == len(BIG)  # visible inside
            raise RuntimeError("the message failed after its attachment was written")
    assert (_count(store, BlobRow), _count(store, BlobChunk)) == (0, 0)
    # Through record(): the message fails after apply() wrote everything.
    from postdesk.store import core

    real = core.apply

    def failing(conn, *args):
        real(conn, *args)
        assert store.blobs.size(BIG_SHA, conn) == len(BIG)
        raise RuntimeError("the commit never happens")

    monkeypatch.setattr(core, "apply", failing)
    with pytest.raises(RuntimeError):
        record(store, new(attachments=(attachment(BIG),)), cfg)
    assert (_count(store, BlobRow), _count(store, BlobChunk)) == (0, 0)
    monkeypatch.setattr(core, "apply", real)
    record(store, new(attachments=(attachment(BIG),)), cfg)
    assert (_count(store, BlobRow), _count(store, BlobChunk)) == (1, 3)
    store.close()


def test_reads_fall_back_to_the_other_backend(make_config, store_url):
    cfg, store = _store(make_config, store_url, "directory")
    r = record(store, new(attachments=(attachment(BIG),)), cfg)
    store.close()
    # The setting changes; the files have not moved yet.
    cfg, store = _store(make_config, store_url, "database")
    (att,) = store.show_ticket(r.ticket)["actions"][0]["attachments"]
    assert not store.blobs.exists(BIG_SHA)
    assert store.attachment(att["id"])[1].read() == BIG
    with store.open_blob(BIG_SHA) as reader:
        assert reader.read() == BIG
    store.close()


@pytest.mark.parametrize("blobs", ["database", "directory"])
def test_delete_blob_refuses_while_referenced(make_config, store_url, blobs):
    cfg, store = _store(make_config, store_url, blobs)
    record(store, new(attachments=(attachment(BIG),)), cfg)
    with pytest.raises(BlobInUse, match="1 attachment still reference"):
        store.delete_blob(BIG_SHA)
    assert store.blob(BIG_SHA).read() == BIG
    loose = store.blobs.put(b"nobody's")
    # In a caller's transaction that rolls back: nothing goes.
    with pytest.raises(RuntimeError):
        with store._write() as conn:
            assert store.delete_blob(loose, conn)
            raise RuntimeError("the purge failed")
    assert store.blob(loose).read() == b"nobody's"
    # ... and one that commits: gone, from both backends (a file once no
    # message has touched it for the grace, postdesk/store/blobs/directory.py).
    store.other_blobs.put(b"nobody's")
    for backend in (store.blobs, store.other_blobs):
        if isinstance(backend, DirectoryBlobs) and backend.path(loose).exists():
            os.utime(backend.path(loose), (time.time() - 2 * GRACE,) * 2)
    with store._write() as conn:
        assert store.delete_blob(loose, conn)
    assert not store.blobs.exists(loose) and not store.other_blobs.exists(loose)
    assert not store.delete_blob(loose)
    store.close()


@pytest.mark.parametrize("blobs", ["database", "directory"])
def test_corrupt_bytes_are_caught_on_reading(make_config, store_url, blobs):
    cfg, store = _store(make_config, store_url, blobs)
    store.blobs.put(BIG)
    if blobs == "database":
        with store._write() as conn:
            conn.execute(update(BlobChunk.__table__).where(BlobChunk.sha256 == BIG_SHA, BlobChunk.seq == 1).values(data=b"\0" * CHUNK))
    else:
        path = store.attachment_path(BIG_SHA)
        path.write_bytes(BIG[:-1] + b"\0")
    with pytest.raises(BlobCorrupt):
        store.blob(BIG_SHA).read()
    store.close()


def test_concurrent_messages_with_the_same_new_attachment(make_config, pg_url):
    """Two transactions insert the same blob at once: the second waits, finds it, both commit."""
    cfg, store = _store(make_config, pg_url, "database")
    barrier = threading.Barrier(2, timeout=10)
    errors: list = []
    results: list = []

    def run(i: int) -> None:
        d = new(attachments=(attachment(BIG, f"{i}.bin"),))

        def decide(known):
            barrier.wait()
            return d

        try:
            results.append(store.record(decide, *_env_cfg(cfg)))
        except Exception as e:  # pragma: no cover - shown by the assertion
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(results) == 2
    assert (_count(store, BlobRow), _count(store, BlobChunk)) == (1, 3)
    assert store.blob(BIG_SHA).read() == BIG
    store.close()


def _env_cfg(cfg):
    from test_store_support import ENVELOPE

    return ENVELOPE, cfg, T0


# --- migration -----------------------------------------------------------------------


def test_migrate_both_ways_resumably(make_config, store_url):
    cfg, store = _store(make_config, store_url, "directory")
    payloads = [os.urandom(1000 + i) for i in range(5)] + [BIG]
    for p in payloads:
        record(store, new(attachments=(attachment(p),)), cfg)
    shas = sorted(hashlib.sha256(p).hexdigest() for p in payloads)
    assert len(_files(store)) == 6

    # Interrupted after the first batch of two...
    class Stop(Exception):
        pass

    def interrupt(progress, last):
        raise Stop

    with pytest.raises(Stop):
        migrate(store, "database", batch=2, report=interrupt)
    assert _count(store, BlobRow) == 2
    # ... and run again: it continues, skipping what moved.
    p = migrate(store, "database", batch=2, remove_source=True)
    assert (p.moved, p.already, p.removed, p.ok) == (4, 2, 6, True)
    assert _files(store) == [] and _count(store, BlobRow) == 6
    # Everything reads from the database now, with the setting changed or not.
    for sha, data in zip(shas, sorted(payloads, key=lambda b: hashlib.sha256(b).hexdigest())):
        assert store.blob(sha).read() == data

    # And back, into files private whatever the umask.
    old = os.umask(0o022)
    try:
        p = migrate(store, "directory", batch=4, remove_source=True)
    finally:
        os.umask(old)
    assert (p.moved, p.removed) == (6, 6)
    assert (_count(store, BlobRow), _count(store, BlobChunk)) == (0, 0)
    assert sorted(f.name for f in _files(store)) == shas
    assert all(f.stat().st_mode & 0o777 == 0o640 for f in _files(store))
    assert migrate(store, "directory").already == 6  # nothing left to do
    store.close()


def test_migrate_reports_missing_and_corrupt_blobs(make_config, store_url):
    cfg, store = _store(make_config, store_url, "directory")
    good, bad, gone = b"good" * 100, b"bad" * 100, b"gone" * 100
    for p in (good, bad, gone):
        record(store, new(attachments=(attachment(p),)), cfg)
    store.attachment_path(hashlib.sha256(bad).hexdigest()).write_bytes(b"tampered")
    store.attachment_path(hashlib.sha256(gone).hexdigest()).unlink()
    p = migrate(store, "database")
    assert p.moved == 1 and p.missing == [hashlib.sha256(gone).hexdigest()] and p.corrupt == [hashlib.sha256(bad).hexdigest()]
    assert not p.ok
    assert store.blobs.exists(hashlib.sha256(bad).hexdigest())  # left where it was
    assert not store.other_blobs.exists(hashlib.sha256(bad).hexdigest())
    store.close()


def test_cli_migrate_attachment_get_and_check(tmp_path, store_url):
    desk = make_desk(tmp_path / "desk", store_url, store={"blobs": "directory"})
    pdf = b"%PDF-1.4 " + os.urandom(CHUNK)
    desk.record(make_mail(attachments=[("report.pdf", "application/pdf", pdf)]))
    p = desk.cli("blobs", "migrate", "--to", "database", "--batch", "0")
    assert p.returncode == 64  # usage
    p = desk.cli("blobs", "migrate", "--to", "database", "--remove-source")
    assert p.returncode == 0, p.stderr
    assert b"moved 1" in p.stdout and b'set blobs = "database"' in p.stderr
    assert not [f for f in desk.attachments.rglob("*") if f.is_file()]
    att = desk.json("ticket", "show", "1000")["actions"][0]["attachments"][0]
    target = tmp_path / "got.pdf"
    p = desk.cli("attachment", "get", str(att["id"]), "-o", str(target))
    assert p.returncode == 0, p.stderr
    assert target.read_bytes() == pdf
    p = desk.cli("blobs", "migrate", "--to", "database")
    assert p.returncode == 0 and b"already there 1" in p.stdout


def test_check_names_the_backend_and_whether_it_reads(make_config, store_url, tmp_path):
    for blobs, expected in (("database", "attachments in database"), ("directory", "attachments in directory")):
        cfg, store = _store(make_config, store_url, blobs)
        report = check.Report()
        check.check_store(cfg, report)
        assert any(expected in line and "readable" in line for line in report.lines), report.lines
        store.close()
    cfg = make_config(store_url, store={"blobs": "directory", "attachments": str(tmp_path / "nowhere")})
    report = check.Report()
    check.check_store(cfg, report)
    assert any("attachments" in what and "not readable" in what for _, what, _ in report.problems), report.lines
    if store_url.startswith("postgresql"):
        cfg = make_config(store_url, store={"blobs": "directory"})
        report = check.Report()
        check.check_store(cfg, report)
        assert any("cannot send them" in w for w in report.warnings), report.lines


# --- the notifier --------------------------------------------------------------------


@pytest.mark.parametrize("blobs", ["database", "directory"])
def test_notifier_streams_attachments_and_retries_a_missing_one(make_config, store_url, blobs):
    sink = Sink().start()
    try:
        cfg = make_config(store_url, store={"blobs": blobs}, notifier={"smtp": f"127.0.0.1:{sink.port}", "quiet_period": 0, "max_wait": 0})
        store = Store.from_config(cfg)
        store.init()
        r = record(store, new(), cfg)
        dotted = b".leading dot\r\n" * 20000  # line starts with "." in the raw bytes
        record(store, staff_reply(r.ticket, attachments=(attachment(BIG, "big.bin"), attachment(dotted, "dots.txt", "text/plain"))), cfg)
        stats = Worker(cfg, store, lambda: T0).run_pass()
        assert stats.sent == 3, stats  # ack, alert, the update
        # The one mail to alice that carries attachments.  (Not "a mail
        # without the ack's words": base64 of BIG held "Here" in about one
        # run in 25, and BIG is drawn once for all four cases.)
        (update_mail,) = [m for m in sink.messages if m.recipients == ["alice@customer.org"] and list(m.message.iter_attachments())]
        parts = list(update_mail.message.iter_attachments())
        assert [p.get_content() if p.get_content_type() != "text/plain" else p.get_payload(decode=True) for p in parts] == [BIG, dotted]
        # A missing blob: retried later, and the connection's other mails still go.
        third = record(store, new(author="carol@customer.org"), cfg)
        record(store, staff_reply(third.ticket, attachments=(attachment(b"lost bytes"),)), cfg)
        sha = hashlib.sha256(b"lost bytes").hexdigest()
        store.blobs.delete(sha)
        sink.clear()
        stats = Worker(cfg, store, lambda: T0).run_pass()
        assert (stats.sent, stats.deferred) == (2, 1), stats
        rows = store.list_outbox()
        (retry,) = [o for o in rows if o["state"] == "queued"]
        assert retry["recipient"] == "carol@customer.org" and "attachment" in retry["last_error"]
        store.close()
    finally:
        sink.stop()


def test_a_blob_found_corrupt_while_sending_ends_the_session_unsent(make_config, store_url):
    """The bytes change after the mail was announced: the session is dropped
    before the message is complete, so the server queues nothing; the row is
    retried, and the bad blob named in its error."""
    sink = Sink().start()
    try:
        cfg = make_config(store_url, store={"blobs": "directory"}, notifier={"smtp": f"127.0.0.1:{sink.port}", "quiet_period": 0, "max_wait": 0})
        store = Store.from_config(cfg)
        store.init()
        r = record(store, new(), cfg)
        assert Worker(cfg, store, lambda: T0).run_pass().sent == 2  # ack and alert out of the way
        record(store, staff_reply(r.ticket, attachments=(attachment(BIG, "big.bin"),)), cfg)
        path = store.attachment_path(BIG_SHA)
        path.write_bytes(BIG[:-1] + b"\0")  # same size: only the digest tells
        sink.clear()
        stats = Worker(cfg, store, lambda: T0).run_pass()
        assert (stats.sent, stats.deferred) == (0, 1), stats
        assert sink.messages == []
        (row,) = [o for o in store.list_outbox() if o["kind"] == "update"]
        assert row["state"] == "queued" and BIG_SHA in row["last_error"]
        store.close()
    finally:
        sink.stop()
