"""Retention (postdesk/store/purge.py): purging old closed tickets and
forgetting a person, on SQLite and PostgreSQL; blob files removed only
after the commit; a purge beside ingest keeps every wait to about a batch."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from test_store_support import T0, attachment, followup, new, record, staff_reply

from postdesk.store import Store, purge
from postdesk.store.blobs import blob_path, unlink_unused, write_blob
from postdesk.store.blobs.directory import PENDING_FILE
from postdesk.store.models import Action, Attachment, MessageId, Outbox, Participant, Person, Ticket
from postdesk.testing import bulk

OLD = T0 - timedelta(days=800)
CUTOFF = T0 - timedelta(days=365)
LONG_AGO = time.time() - 10 * 86400  # a blob file last touched ten days ago


def counts(store) -> dict[str, int]:
    with store.session(read_only=True) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in (Ticket, Action, Attachment, MessageId, Participant, Outbox, Person)}


def close_at(store, cfg, number: int, when) -> None:
    store.set_status(number, "closed", cfg, when)
    with store.session() as s:
        # The status mail of the close: sent long ago (a queued one keeps the ticket).
        for o in s.scalars(select(Outbox).join(Ticket, Ticket.id == Outbox.ticket_id).where(Ticket.number == number)):
            o.state = "sent"


def age_blobs(store) -> None:
    for path in store.attachments.rglob("*"):
        if path.is_file():
            os.utime(path, (LONG_AGO, LONG_AGO))


def has_blob(store, data: bytes) -> bool:
    sha = write_sha(data)
    return store.blobs.exists(sha) or store.other_blobs.exists(sha)


def addresses(store) -> set[str]:
    with store.session(read_only=True) as s:
        return set(s.scalars(select(Person.address)))


@pytest.fixture
def desk(store, cfg):
    """Ticket a (alice, old, closed, a blob of its own and a shared one),
    b (bob, old, closed, alice is cc), c (carol, recent, closed, the shared
    blob), d (dave, old, open)."""
    a = record(store, new(attachments=(attachment(b"only in a"), attachment(b"shared"))), cfg, OLD).ticket
    record(store, staff_reply(a), cfg, OLD + timedelta(hours=1))
    close_at(store, cfg, a, OLD + timedelta(days=1))
    b = record(store, new("bob@customer.org", cc=("alice@customer.org",)), cfg, OLD).ticket
    close_at(store, cfg, b, OLD + timedelta(days=2))
    c = record(store, new("carol@customer.org", attachments=(attachment(b"shared"),)), cfg, T0 - timedelta(days=10)).ticket
    close_at(store, cfg, c, T0 - timedelta(days=9))
    d = record(store, new("dave@customer.org"), cfg, OLD).ticket
    with store.session() as s:
        s.execute(Outbox.__table__.update().values(state="sent"))
    age_blobs(store)
    return {"a": a, "b": b, "c": c, "d": d}


def numbers(store) -> list[int]:
    return [t["number"] for t in store.list_tickets()]


def test_purge_removes_old_closed_tickets_and_what_hangs_off_them(store, cfg, desk):
    dry = purge.count_closed(store, CUTOFF)
    before = counts(store)
    assert counts(store) == before  # the dry run changed nothing
    done = purge.purge_closed(store, CUTOFF, sleep=lambda s: None)
    after = counts(store)
    assert numbers(store) == [desk["c"], desk["d"]]
    assert done == dry
    assert done.tickets == 2
    assert done.actions == before["actions"] - after["actions"] > 0
    assert done.message_ids == before["message_ids"] - after["message_ids"] > 0
    assert done.outbox == before["outbox"] - after["outbox"] > 0
    assert done.participants == before["participants"] - after["participants"] > 0
    assert done.attachments == 2
    # alice, bob and the staff member who answered only on a are gone.
    assert addresses(store) == {"carol@customer.org", "dave@customer.org"}
    assert done.people == 3
    # The blob only a had is gone; the one c shares stays.
    assert done.blobs == 1
    assert not has_blob(store, b"only in a")
    assert has_blob(store, b"shared")
    # Nothing left to do.
    assert purge.purge_closed(store, CUTOFF, sleep=lambda s: None) == purge.Counts()


def write_sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_purge_keeps_a_ticket_with_mail_still_to_send(store, cfg, desk):
    with store.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == desk["a"]))
        s.scalars(select(Outbox).where(Outbox.ticket_id == t.id)).first().state = "queued"
    done = purge.purge_closed(store, CUTOFF, sleep=lambda s: None)
    assert done.tickets == 1
    assert numbers(store) == [desk["a"], desk["c"], desk["d"]]


def test_purge_works_in_batches_with_pauses(store, cfg):
    for i in range(7):
        n = record(store, new(f"c{i}@customer.org"), cfg, OLD).ticket
        close_at(store, cfg, n, OLD)
    pauses: list[float] = []
    seen: list[int] = []
    done = purge.purge_closed(store, CUTOFF, batch=3, sleep=pauses.append, progress=lambda c: seen.append(c.tickets))
    assert done.tickets == 7 and seen == [3, 6, 7]
    assert len(pauses) == 2 and all(p >= purge.PAUSE for p in pauses)
    assert numbers(store) == []


def test_purge_batch_must_be_positive(store):
    with pytest.raises(ValueError):
        purge.purge_closed(store, CUTOFF, batch=0)


@pytest.fixture
def file_store(make_config, store_url):
    """A store keeping blobs as files, on either database."""
    cfg = make_config(store_url, store={"blobs": "directory"})
    s = Store.from_config(cfg)
    s.init(cfg.organization.first_ticket_number)
    yield s, cfg
    s.close()


def test_recent_blob_survives_its_rows(file_store):
    """A blob file touched within the grace (a message reusing it right
    now) stays on disk though no row references it any more."""
    store, cfg = file_store
    n = record(store, new(attachments=(attachment(b"fresh"),)), cfg, OLD).ticket
    close_at(store, cfg, n, OLD)
    done = purge.purge_closed(store, CUTOFF, sleep=lambda s: None)
    assert done.tickets == 1 and done.blobs == 1
    assert store.attachment_path(write_sha(b"fresh")).exists()
    # The next run, with nothing to purge, removes it once it is old.
    assert purge.purge_closed(store, CUTOFF, sleep=lambda s: None).tickets == 0
    assert store.attachment_path(write_sha(b"fresh")).exists()
    age_blobs(store)
    assert purge.purge_closed(store, CUTOFF, sleep=lambda s: None).tickets == 0
    assert not store.attachment_path(write_sha(b"fresh")).exists()
    assert not (store.attachments / PENDING_FILE).exists()


def test_reused_blob_is_touched_and_kept(tmp_path):
    sha, _ = write_blob(tmp_path, b"logo")
    path = blob_path(tmp_path, sha)
    os.utime(path, (LONG_AGO, LONG_AGO))
    write_blob(tmp_path, b"logo")  # a new message with the same bytes
    assert unlink_unused(tmp_path, {sha}, lambda s: False) == (0, {sha})
    assert path.read_bytes() == b"logo"
    os.utime(path, (LONG_AGO, LONG_AGO))
    # Referenced again (a row committed since the purge's transaction): kept.
    assert unlink_unused(tmp_path, {sha}, lambda s: True) == (0, set())
    assert path.exists()
    assert unlink_unused(tmp_path, {sha}, lambda s: False) == (1, set())
    assert not path.exists()
    assert not list(path.parent.glob(".purge-*"))
    # A blob written after its removal comes back whole.
    write_blob(tmp_path, b"logo")
    assert path.read_bytes() == b"logo"
    # A missing file is no error.
    assert unlink_unused(tmp_path, {sha.replace(sha[0], "0" if sha[0] != "0" else "1", 1)}, lambda s: False) == (0, set())


# --- forget ----------------------------------------------------------------------


def texts(store, number: int) -> list[tuple[str | None, str, str, str]]:
    t = store.show_ticket(number)
    return [(a["author"], a["text"], a["message_id"], " ".join(a["delivered_to"])) for a in t["actions"]]


def test_forget_purges_their_tickets_and_erases_them_elsewhere(store, cfg):
    own = record(store, new("alice@customer.org", attachments=(attachment(b"alice's scan"),)), cfg, T0).ticket
    other = record(store, new("bob@customer.org", cc=("alice@customer.org",)), cfg, T0).ticket
    record(store, followup(other, "alice@customer.org", text="Me too. Alice, +49 30 1234\n", new_text="Me too. Alice"), cfg, T0 + timedelta(minutes=1))
    record(
        store,
        staff_reply(other, text="Noted.\n\nOn Monday Alice <Alice@Customer.org> wrote:\n> Me too.\n", new_text="Noted."),
        cfg,
        T0 + timedelta(minutes=2),
    )
    age_blobs(store)

    dry = purge.forget_person(store, "Alice@customer.org", dry_run=True)
    assert dry.found and dry.purged is not None and dry.purged.tickets == 1 and dry.erased_actions == 1
    assert numbers(store) == [own, other]  # unchanged

    done = purge.forget_person(store, "Alice@customer.org", sleep=lambda s: None)
    assert done.purged is not None and done.purged.tickets == 1 and done.purged.blobs == 1
    assert numbers(store) == [other]
    assert not has_blob(store, b"alice's scan")
    rows = texts(store, other)
    assert all("alice@customer.org" not in " ".join(map(str, r)).lower() for r in rows), rows
    erased = [r for r in rows if r[1] == purge.ERASED]
    assert len(erased) == 1 and erased[0][2] == ""
    assert any("forgotten-" in r[1] and "@invalid" in r[1] for r in rows if r[1] != purge.ERASED)
    assert "alice@customer.org" not in addresses(store)
    assert done.person == "anonymised"  # her erased action still has an author row
    ticket = store.show_ticket(other)
    assert "alice@customer.org" not in {p["address"] for p in ticket["participants"]}
    with store.session(read_only=True) as s:
        assert not s.scalars(select(Outbox).where(Outbox.recipient == "alice@customer.org")).all()
        erased_ids = [a["id"] for a in ticket["actions"] if a["text"] == purge.ERASED]
        # Her Message-ID no longer threads anything to her.
        assert not s.scalars(select(MessageId.key).where(MessageId.action_id.in_(erased_ids))).all()


def test_forget_someone_unknown(store):
    assert purge.forget_person(store, "nobody@nowhere.example").found is False


def test_forget_a_requester_only_deletes_the_person(store, cfg):
    record(store, new("erin@customer.org"), cfg, T0)
    done = purge.forget_person(store, "erin@customer.org", sleep=lambda s: None)
    assert done.person == "deleted" and numbers(store) == []
    assert "erin@customer.org" not in addresses(store)


# --- beside ingest -------------------------------------------------------------------


def test_purge_beside_ingest_waits_about_a_batch(store, cfg):
    """Mail recorded while a purge runs waits at most about one batch, not
    the whole purge: the purge's batches are short transactions."""
    bulk.fill(store, 3000, now=T0)  # 90% closed, spread over 1000 days
    baseline = []
    for _ in range(5):
        t = time.perf_counter()
        record(store, new(), cfg, T0)
        baseline.append(time.perf_counter() - t)

    batches: list[float] = []

    def pause(seconds: float) -> None:
        batches.append(seconds)  # max(PAUSE, the batch's own duration)
        time.sleep(seconds)

    result: dict = {}

    def run() -> None:
        t = time.perf_counter()
        result["counts"] = purge.purge_closed(store, T0, batch=100, sleep=pause)
        result["seconds"] = time.perf_counter() - t

    worker = threading.Thread(target=run)
    worker.start()
    waits = []
    while worker.is_alive():
        t = time.perf_counter()
        record(store, new(), cfg, T0)
        waits.append(time.perf_counter() - t)
    worker.join()
    assert result["counts"].tickets == 2700
    assert len(batches) >= 20
    # Mail went in all along, and no message waited for more than a few
    # batches: far less than the purge took as a whole.
    assert len(waits) >= 10
    longest_batch = max(batches)
    assert max(waits) < 3 * longest_batch + 10 * max(baseline), (max(waits), longest_batch, max(baseline))
    assert max(waits) < result["seconds"] / 3


def test_purge_keeps_a_person_a_message_references_meanwhile(store, cfg, desk):
    """A message being recorded references alice (on a ticket that stays)
    while the purge is about to delete her with ticket a: the purge waits
    for it (SQLite: the write lock; PostgreSQL: the row's key-share lock,
    then a foreign key violation and the batch again), and keeps her."""
    with store.session(read_only=True) as s:
        alice = s.scalar(select(Person.id).where(Person.address == "alice@customer.org"))
        c_id = s.scalar(select(Ticket.id).where(Ticket.number == desk["c"]))
    result: dict = {}
    with store.engine.connect() as conn:
        with conn.begin():
            conn.execute(Participant.__table__.insert().values(ticket_id=c_id, person_id=alice, role="cc", last_update_action_id=0, last_message_id=""))
            worker = threading.Thread(target=lambda: result.update(counts=purge.purge_closed(store, CUTOFF, sleep=time.sleep)))
            worker.start()
            worker.join(0.5)
            assert worker.is_alive()  # waiting for this transaction
        worker.join(30)
    assert not worker.is_alive()
    assert result["counts"].tickets == 2
    assert "alice@customer.org" in addresses(store)
    assert numbers(store) == [desk["c"], desk["d"]]


def test_dry_run_counts_what_the_purge_removes_on_a_bulk_store(store, cfg, desk):
    """People with tickets on both sides of the date (every bulk customer),
    blobs shared by kept and purged tickets: the dry run's set arithmetic
    matches the purge."""
    bulk.fill(store, 2000, now=T0)
    before = T0 - timedelta(days=400)
    dry = purge.count_closed(store, before)
    # desk's a and b go, with alice, bob and the staff member; the bulk
    # customers and the 16 bulk blobs are still used by newer tickets.
    assert 2 < dry.tickets < 2002 and dry.people == 3 and dry.blobs == 1
    done = purge.purge_closed(store, before, batch=150, sleep=lambda s: None)
    assert done == dry
    assert purge.count_closed(store, before) == purge.Counts()
