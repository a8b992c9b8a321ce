"""The store's side of the staff commands, on SQLite and PostgreSQL:
merge (postdesk/store/merge.py), [fwd]'s requester and note, the follow-up
of a long-closed ticket, and the refusal row."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from test_store_support import T0, attachment, followup, new, record, staff_reply

from postdesk.filter.decision import Kind
from postdesk.store.merge import MergeRefused
from postdesk.store.models import MessageId, Outbox, Ticket
from postdesk.store.view import KnownView


def outbox(store, kind: str | None = None) -> list[tuple[str, int, str]]:
    with store.session(read_only=True) as s:
        q = select(Outbox.kind, Ticket.number, Outbox.recipient).join(Ticket, Ticket.id == Outbox.ticket_id).order_by(Outbox.id)
        return [r for r in s.execute(q).all() if kind is None or r[0] == kind]


def test_merge_moves_everything(store, cfg):
    m = record(store, new(key="m1@customer.org", attachments=(attachment(b"PDF!", "bill.pdf"),)), cfg).ticket
    record(store, followup(m, key="m2@customer.org"), cfg)
    n = record(store, new(author="carol@other.org", key="n1@other.org"), cfg).ticket
    into = store.merge_tickets(m, n, cfg, T0)
    assert into == n
    tm, tn = store.show_ticket(m), store.show_ticket(n)
    assert tm["status"] == "closed" and tm["merged_into"] == n and tm["closed_at"]
    assert [a["text"] for a in tm["actions"]] == [f"Merged into [#{n}]"]
    ids = [a["message_id"] for a in tn["actions"]]
    assert {"m1@customer.org", "m2@customer.org", "n1@other.org"} <= set(ids)
    assert any(att["filename"] == "bill.pdf" for a in tn["actions"] for att in a["attachments"])
    assert {p["address"] for p in tn["participants"]} == {"alice@customer.org", "carol@other.org"}
    assert tn["requester"] == "carol@other.org"
    assert any(f"[#{m}]" in a["text"] and not a["public"] for a in tn["actions"])
    # M's Message-IDs now name N: a reply to M's mail lands there.
    with store.session(read_only=True) as s:
        view = KnownView(s.connection(), store.secret)
        assert view.ticket_for_message_ids(["m1@customer.org"]) == n
        assert view.ticket(m).merged_into == n
        keys = s.execute(select(MessageId.key).join(Ticket, Ticket.id == MessageId.ticket_id).where(Ticket.number == m)).all()
        assert keys == []
    # Acks and alerts still to go are about N now.
    assert all(number == n for _k, number, _r in outbox(store))


def test_merge_follows_the_chain_and_refuses_cycles(store, cfg):
    a, b, c = (record(store, new(author=f"x{i}@customer.org"), cfg).ticket for i in range(3))
    assert store.merge_tickets(a, b, cfg, T0) == b
    assert store.merge_tickets(c, a, cfg, T0) == b  # a was merged into b: the chain is followed
    with pytest.raises(MergeRefused, match="itself"):
        store.merge_tickets(b, b, cfg, T0)
    with pytest.raises(MergeRefused, match="cycle"):
        store.merge_tickets(b, a, cfg, T0)
    with pytest.raises(MergeRefused, match="already merged"):
        store.merge_tickets(a, c, cfg, T0)
    with pytest.raises(LookupError, match="no ticket 9999"):
        store.merge_tickets(b, 9999, cfg, T0)


def test_merge_by_mail_and_its_log_change(store, cfg):
    m = record(store, new(), cfg).ticket
    n = record(store, new(author="carol@other.org"), cfg).ticket
    r = record(store, staff_reply(m, merge_into=n, public=False), cfg)
    assert r.changes == {"merged_into": str(n)}
    assert store.show_ticket(m)["merged_into"] == n
    # A refused merge (n merged into ... m is merged already) is reported back.
    r = record(store, staff_reply(n, merge_into=m, public=False), cfg)
    assert "merged_into" not in r.changes
    assert outbox(store, "refusal") == [("refusal", n, "bob@example.com")]
    note = store.show_ticket(n)["actions"][-1]
    assert not note["public"] and "refused" in note["flags"] and "not merged" not in note["text"] and "[merge" in note["text"]


def test_refusal_goes_to_staff_only(store, cfg):
    n = record(store, new(), cfg).ticket
    record(store, staff_reply(n, refused=("[frobnicate]: unknown command",)), cfg)
    assert outbox(store, "refusal") == [("refusal", n, "bob@example.com")]
    # From a customer (the filter never gives one, but the store must not mail it either).
    record(store, followup(n, refused=("[x]: unknown command",)), cfg)
    assert len(outbox(store, "refusal")) == 1


def test_fwd_requester_note_and_ack(store, cfg):
    d = new(
        author="bob@example.com", staff=True, requester="jana@kunde.example", requester_name="Jana", note="She called.",
        ack_to="jana@kunde.example", text="Rechnung doppelt.", new_text="Rechnung doppelt.", flags=frozenset({"staff", "fwd"}),
    )
    n = record(store, d, cfg).ticket
    t = store.show_ticket(n)
    assert t["requester"] == "jana@kunde.example"
    first, note = t["actions"][0], t["actions"][1]
    assert (first["author"], first["public"], first["text"]) == ("jana@kunde.example", True, "Rechnung doppelt.")
    assert (note["author"], note["public"], note["text"]) == ("bob@example.com", False, "She called.")
    assert {(p["address"], p["role"]) for p in t["participants"]} == {("jana@kunde.example", "requester"), ("bob@example.com", "staff")}
    assert outbox(store, "ack") == [("ack", n, "jana@kunde.example")]
    assert record(store, new(author="bob@example.com", staff=True, requester="x@y.example", key="k2@x"), cfg).changes == {"requester": "x@y.example"}


def test_follow_up_ticket_names_the_old_one(store, cfg):
    old = record(store, new(), cfg).ticket
    r = record(store, new(key="late@customer.org", follow_up_of=old, flags=frozenset({"follow-up"})), cfg)
    t = store.show_ticket(r.ticket)
    assert t["follow_up_of"] == old
    assert t["actions"][0]["kind"] == "system" and t["actions"][0]["text"] == f"Follow-up to [#{old}]"
    assert t["actions"][1]["message_id"] == "late@customer.org"
    assert [k for k, _n, _r in outbox(store) if _n == r.ticket] == ["ack", "alert"]


def test_reopen_by_status(store, cfg):
    n = record(store, new(), cfg).ticket
    record(store, staff_reply(n, status="closed"), cfg)
    r = record(store, followup(n, status="open", flags=frozenset({"reopened"})), cfg)
    assert r.changes == {"status": "open"} and store.show_ticket(n)["closed_at"] is None
    assert r.decision.kind is Kind.FOLLOWUP
