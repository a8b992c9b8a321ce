"""The admin API (postdesk ticket/action/attachment/outbox) and the debounced
customer update scheduling, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from test_store_support import T0, attachment, followup, new, record, staff_reply

from postdesk.store import Store, queue_updates
from postdesk.store.models import Outbox, Ticket


def updates(store) -> list[tuple[str, str, object]]:
    with store.session(read_only=True) as s:
        rows = s.scalars(select(Outbox).where(Outbox.kind == "update").order_by(Outbox.id))
        return [(o.recipient, o.state, o.due_at) for o in rows]


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def test_quiet_period_moves_one_row(store, cfg):
    """Changes at 0 s, 60 s and 150 s with a 120 s quiet period: one row, due at 270 s."""
    n = record(store, new(), cfg, at(-10)).ticket
    record(store, staff_reply(n), cfg, at(0))
    assert updates(store) == [("alice@customer.org", "queued", at(120))]
    record(store, staff_reply(n), cfg, at(60))
    assert updates(store) == [("alice@customer.org", "queued", at(180))]
    with store.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == n))
        queue_updates(s.connection(), t.id, True, at(150), cfg)
    assert updates(store) == [("alice@customer.org", "queued", at(270))]


def test_claimed_row_is_left_alone(store, cfg):
    n = record(store, new(), cfg).ticket
    record(store, staff_reply(n), cfg, at(0))
    with store.session() as s:
        s.scalar(select(Outbox).where(Outbox.kind == "update")).state = "sending"
    record(store, staff_reply(n), cfg, at(30))
    assert updates(store) == [("alice@customer.org", "sending", at(120)), ("alice@customer.org", "queued", at(150))]


def test_updates_go_to_customers_only(store, cfg):
    n = record(store, new(cc=("carol@customer.org", "colleague@example.com")), cfg).ticket
    record(store, staff_reply(n), cfg, at(0))
    # staff addresses (config staff) and our own addresses never get customer updates
    assert [r for r, _, _ in updates(store)] == ["alice@customer.org", "carol@customer.org"]


def test_status_change_schedules_update(store, cfg):
    n = record(store, new(), cfg).ticket
    assert store.set_status(n, "closed", cfg, at(5)) is True
    assert store.set_status(n, "closed", cfg, at(6)) is False
    assert updates(store) == [("alice@customer.org", "queued", at(125))]
    t = store.show_ticket(n)
    assert t["status"] == "closed"
    last = t["actions"][-1]
    assert (last["kind"], last["public"], last["text"], last["author"]) == ("status", True, "Status changed from open to closed", None)
    assert store.set_status(n, "open", cfg, at(10)) is True
    assert store.show_ticket(n)["actions"][-1]["text"] == "Status changed from closed to open"
    assert updates(store) == [("alice@customer.org", "queued", at(130))]
    with pytest.raises(ValueError):
        store.set_status(n, "resolved", cfg, at(11))
    with pytest.raises(LookupError, match="no ticket #9999"):
        store.set_status(9999, "closed", cfg, at(11))


def test_status_change_without_status_emails(make_config, store_url):
    cfg = make_config(store_url, organization={"status_change_emails": False})
    store = Store.from_config(cfg)
    store.init()
    n = record(store, new(), cfg).ticket
    assert store.set_status(n, "closed", cfg, at(5)) is True
    assert updates(store) == []
    assert store.show_ticket(n)["actions"][-1]["kind"] == "status"
    store.close()


def test_visibility(store, cfg):
    n = record(store, new(), cfg).ticket
    assert store.set_visibility(n, False, cfg, at(1)) is True
    # An invisible ticket: a public staff reply schedules no customer mail.
    record(store, staff_reply(n), cfg, at(2))
    assert updates(store) == []
    assert store.show_ticket(n)["visible_to_customers"] is False
    assert store.set_visibility(n, True, cfg, at(3)) is True
    assert store.set_visibility(n, True, cfg, at(4)) is False
    assert updates(store) == [("alice@customer.org", "queued", at(123))]
    with pytest.raises(LookupError):
        store.set_visibility(4242, True, cfg, at(5))


def test_toggle_action(store, cfg):
    n = record(store, new(), cfg).ticket
    pvt = record(store, staff_reply(n, public=False, flags=frozenset({"staff", "pvt"})), cfg, at(1)).action_id
    assert updates(store) == []
    assert store.toggle_action(pvt, cfg, at(10)) is True
    assert updates(store) == [("alice@customer.org", "queued", at(130))]
    assert store.toggle_action(pvt, cfg, at(20)) is False  # back to private: nothing moves
    assert updates(store) == [("alice@customer.org", "queued", at(130))]
    assert [a["public"] for a in store.show_ticket(n)["actions"]] == [True, False]
    with pytest.raises(LookupError, match="no action 987654"):
        store.toggle_action(987654, cfg, at(21))


def test_toggle_never_mails_the_author(store, cfg):
    n = record(store, new(), cfg).ticket
    a = record(store, followup(n, public=False, flags=frozenset({"auto"})), cfg).action_id
    store.toggle_action(a, cfg, at(5))
    assert updates(store) == []  # alice wrote it; nobody else is a customer here


def test_show_ticket_json_shape(store, cfg):
    d = new(attachments=(attachment(b"%PDF-1.4 ...", "invoice.pdf", "application/pdf"),))
    r = record(store, d, cfg)
    record(store, staff_reply(r.ticket, text="Fixed."), cfg, at(30))
    shown = store.show_ticket(r.ticket)
    json.dumps(shown)  # plain JSON types only
    assert {"number", "subject", "status", "visible_to_customers", "requester", "created_at", "actions"} <= set(shown)
    assert (shown["number"], shown["subject"], shown["status"], shown["requester"]) == (1000, "Printer on fire", "open", "alice@customer.org")
    assert shown["created_at"] == "2026-11-27T12:00:00Z"
    first, second = shown["actions"]
    assert {"id", "author", "public", "text", "message_id", "attachments", "kind", "flags", "new_text", "created_at"} <= set(first)
    assert (first["id"], first["author"], first["public"], first["message_id"]) == (r.action_id, "alice@customer.org", True, d.message_id)
    (att,) = first["attachments"]
    assert set(att) >= {"id", "filename", "content_type", "size", "sha256"}
    assert (att["filename"], att["content_type"], att["size"]) == ("invoice.pdf", "application/pdf", 12)
    assert (second["author"], second["text"], second["flags"]) == ("bob@example.com", "Fixed.", ["staff"])
    assert store.show_ticket(999) is None


def test_list_tickets(store, cfg):
    a = record(store, new(), cfg).ticket
    b = record(store, new(author="zed@customer.org", subject="Other"), cfg).ticket
    store.set_status(a, "closed", cfg, at(1))
    listed = store.list_tickets()
    assert [t["number"] for t in listed] == [a, b]
    assert all("actions" not in t for t in listed)
    json.dumps(listed)
    assert [t["number"] for t in store.list_tickets("closed")] == [a]
    assert [(t["number"], t["requester"]) for t in store.list_tickets("open")] == [(b, "zed@customer.org")]
    with pytest.raises(ValueError):
        store.list_tickets("bogus")


def test_attachment_lookup(store, cfg):
    r = record(store, new(attachments=(attachment(b"bytes!", "x.txt", "text/plain"),)), cfg)
    (att,) = store.show_ticket(r.ticket)["actions"][0]["attachments"]
    info, blob = store.attachment(att["id"])
    assert blob.read() == b"bytes!" and blob.size == 6 and blob.sha256 == att["sha256"]
    assert (info["filename"], info["ticket"], info["action_id"]) == ("x.txt", r.ticket, r.action_id)
    with pytest.raises(LookupError, match="no attachment 5555"):
        store.attachment(5555)
    assert store.blobs.delete(att["sha256"])
    with pytest.raises(LookupError, match="missing"):
        store.attachment(att["id"])


def test_list_outbox(store, cfg):
    r = record(store, new(), cfg)
    rows = store.list_outbox()
    json.dumps(rows)
    assert [(o["kind"], o["recipient"], o["ticket"], o["state"], o["action_id"]) for o in rows] == [
        ("ack", "alice@customer.org", r.ticket, "queued", r.action_id),
        ("alert", "team@example.com", r.ticket, "queued", r.action_id),
    ]
    assert rows[0]["due_at"] == "2026-11-27T12:00:00Z"


def test_session_commits_and_rolls_back(store, cfg):
    r = record(store, new(), cfg)
    with pytest.raises(RuntimeError):
        with store.session() as s:
            s.scalar(select(Ticket)).subject = "changed"
            raise RuntimeError("boom")
    assert store.show_ticket(r.ticket)["subject"] == "Printer on fire"
    with store.session() as s:
        s.scalar(select(Ticket)).subject = "changed"
    assert store.show_ticket(r.ticket)["subject"] == "changed"


def test_max_wait_bounds_the_quiet_period(store, cfg):
    """A change every 60 s (quiet_period 120 s) would postpone the update
    forever; it is due max_wait (900 s) after the first change it waits for."""
    n = record(store, new(), cfg, at(-10)).ticket
    for t in range(0, 1200, 60):
        record(store, staff_reply(n), cfg, at(t))
    assert updates(store) == [("alice@customer.org", "queued", at(900))]


def test_a_deferred_update_keeps_its_time(store, cfg):
    """A due time beyond now + quiet_period is a rate limit's deferral: a
    change does not pull it forward."""
    n = record(store, new(), cfg, at(-10)).ticket
    record(store, staff_reply(n), cfg, at(0))
    with store.session() as s:
        s.scalar(select(Outbox).where(Outbox.kind == "update")).due_at = at(3000)
    record(store, staff_reply(n), cfg, at(60))
    assert updates(store) == [("alice@customer.org", "queued", at(3000))]
