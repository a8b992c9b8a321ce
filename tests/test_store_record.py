"""Store.init and Store.record on SQLite and PostgreSQL: tickets, follow-ups,
attachments, participants, outbox rows, duplicates."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from test_store_support import ENVELOPE, T0, attachment, followup, new, record, staff_reply

from postdesk.auth.result import AuthResult
from postdesk.filter.decision import Kind
from postdesk.outcomes import Outcome
from postdesk.store import Store
from postdesk.store.models import Action, Attachment, Counter, MessageId, Outbox, Participant, Person, Setting, Ticket

VERIFIED = AuthResult(spf="pass", dkim="pass", dmarc="pass", from_domain="customer.org", spf_aligned=True, dkim_aligned=True, source="local")
FORGED = AuthResult(spf="fail", dmarc="fail", from_domain="customer.org", source="local")
UNVERIFIED = AuthResult(from_domain="customer.org", source="local")



def count(store, model) -> int:
    with store.session(read_only=True) as s:
        return s.scalar(select(func.count()).select_from(model))


def outbox(store) -> list[tuple[str, str, int]]:
    with store.session(read_only=True) as s:
        return [(o.kind, o.recipient, o.action_id) for o in s.scalars(select(Outbox).order_by(Outbox.id))]


def test_init_is_idempotent(cfg):
    s = Store.from_config(cfg)
    s.init(1000)
    secret = s.secret()
    assert len(secret) == 32
    s.init(1000)
    s2 = Store.from_config(cfg)
    assert s2.secret() == secret
    assert count(s, Setting) == 1
    assert count(s, Counter) == 1
    assert (s.attachments).is_dir()
    s.close()
    s2.close()


def test_new_ticket(store, cfg):
    d = new(cc=("carol@customer.org", "support@example.com"))
    r = record(store, d, cfg)
    assert r.outcome is Outcome.CREATED
    assert r.ticket == 1000
    assert r.decision is d
    with store.session(read_only=True) as s:
        t = s.scalar(select(Ticket))
        assert (t.number, t.subject, t.status, t.requester.address) == (1000, "Printer on fire", "open", "alice@customer.org")
        assert t.requester.name == "Alice"
        (a,) = t.actions
        assert a.id == r.action_id
        assert (a.kind, a.public, a.text, a.new_text, a.queue_id) == ("message", True, "It is on fire.\n", "It is on fire.", "4BxT2k1Z3n")
        assert a.delivered_to == "carol@customer.org"
        roles = {p.person.address: (p.role, p.last_update_action_id, p.last_message_id) for p in t.participants}
        assert roles == {
            "alice@customer.org": ("requester", a.id, d.message_id),
            "carol@customer.org": ("cc", a.id, ""),
        }
        key = s.scalar(select(MessageId))
        assert (key.key, key.ticket_id, key.action_id, key.ours) == (d.message_key, t.id, a.id, False)
    # ack to the requester, alert to the team, both due now; no customer update
    # (the requester wrote it, carol got it directly).
    assert outbox(store) == [("ack", "alice@customer.org", r.action_id), ("alert", "team@example.com", r.action_id)]
    with store.session(read_only=True) as s:
        assert {o.due_at for o in s.scalars(select(Outbox))} == {T0}


def test_numbers_are_contiguous_from_first_ticket_number(store, cfg):
    numbers = [record(store, new(), cfg).ticket for _ in range(5)]
    assert numbers == [1000, 1001, 1002, 1003, 1004]


def test_first_ticket_number_from_init(make_config, store_url):
    cfg = make_config(store_url, organization={"first_ticket_number": 42})
    s = Store.from_config(cfg)
    s.init(cfg.organization.first_ticket_number)
    assert record(s, new(), cfg).ticket == 42
    s.close()


def test_no_ack_no_alert_when_decision_says_so(store, cfg):
    r = record(store, new(send_ack=False, notify_team=False, flags=frozenset({"auto"})), cfg)
    assert r.outcome is Outcome.CREATED
    assert outbox(store) == []
    assert store.show_ticket(r.ticket)["actions"][0]["flags"] == ["auto"]


def test_followup_by_customer_and_staff_reply(store, cfg):
    first = record(store, new(), cfg)
    n = first.ticket
    # Customer follow-up: an action, a team alert, no update for the author.
    r = record(store, followup(n, text="More info"), cfg, T0 + timedelta(seconds=10))
    assert (r.outcome, r.ticket) == (Outcome.UPDATED, n)
    kinds = [k for k, _, _ in outbox(store)]
    assert kinds == ["ack", "alert", "alert"]
    # Staff public reply: alice gets a queued update due after the quiet period.
    r2 = record(store, staff_reply(n, message_id="staff1@example.com", message_key="staff1@example.com"), cfg, T0 + timedelta(seconds=20))
    assert r2.outcome is Outcome.UPDATED
    with store.session(read_only=True) as s:
        ups = s.scalars(select(Outbox).where(Outbox.kind == "update")).all()
        assert [(u.recipient, u.state, u.due_at) for u in ups] == [("alice@customer.org", "queued", T0 + timedelta(seconds=140))]
        bob = s.scalar(select(Person).where(Person.address == "bob@example.com"))
        assert bob.staff is True
        p = s.scalar(select(Participant).where(Participant.person_id == bob.id))
        assert (p.role, p.last_message_id) == ("staff", "staff1@example.com")
        t = s.scalar(select(Ticket))
        assert t.updated_at == T0 + timedelta(seconds=20)
        assert [a.author.address for a in t.actions] == ["alice@customer.org", "alice@customer.org", "bob@example.com"]


def test_private_staff_reply_schedules_nothing(store, cfg):
    n = record(store, new(), cfg).ticket
    before = outbox(store)
    r = record(store, staff_reply(n, public=False, flags=frozenset({"staff", "pvt"})), cfg)
    assert r.outcome is Outcome.UPDATED
    assert outbox(store) == before
    show = store.show_ticket(n)
    assert [a["public"] for a in show["actions"]] == [True, False]


def test_stranger_is_not_added_as_participant(store, cfg):
    n = record(store, new(), cfg).ticket
    r = record(store, followup(n, author="mallory@evil.test", public=False, cc=("eve@evil.test",), flags=frozenset({"stranger"})), cfg)
    assert r.outcome is Outcome.UPDATED
    with store.session(read_only=True) as s:
        addresses = {p.person.address for p in s.scalar(select(Ticket)).participants}
    assert addresses == {"alice@customer.org"}


def test_customer_cc_on_followup_joins_the_ticket(store, cfg):
    n = record(store, new(), cfg).ticket
    r = record(store, followup(n, cc=("dave@customer.org",)), cfg)
    with store.session(read_only=True) as s:
        t = s.scalar(select(Ticket))
        ps = {p.person.address: (p.role, p.last_update_action_id) for p in t.participants}
    assert ps["dave@customer.org"] == ("cc", r.action_id)
    # Nobody to update: alice wrote it, dave received it directly.
    assert [k for k, _, _ in outbox(store) if k == "update"] == []


def test_close_by_staff_records_status_action(store, cfg):
    n = record(store, new(), cfg).ticket
    r = record(store, staff_reply(n, public=False, close=True, flags=frozenset({"staff", "pvt", "closed"})), cfg, T0 + timedelta(seconds=5))
    assert r.outcome is Outcome.UPDATED
    show = store.show_ticket(n)
    assert show["status"] == "closed"
    kinds = [(a["kind"], a["public"], a["text"] if a["kind"] == "status" else "") for a in show["actions"]]
    assert kinds == [("message", True, ""), ("message", False, ""), ("status", True, "Status changed from open to closed")]
    ups = [(k, rcpt) for k, rcpt, _ in outbox(store) if k == "update"]
    assert ups == [("update", "alice@customer.org")]


def test_close_without_status_change_emails(make_config, store_url):
    cfg = make_config(store_url, organization={"status_change_emails": False})
    store = Store.from_config(cfg)
    store.init(1000)
    n = record(store, new(), cfg).ticket
    record(store, staff_reply(n, public=False, close=True, flags=frozenset({"staff", "pvt", "closed"})), cfg)
    assert store.show_ticket(n)["status"] == "closed"
    assert [k for k, _, _ in outbox(store) if k == "update"] == []
    store.close()


def test_ignore_writes_nothing(store, cfg):
    r = record(store, new(kind=Kind.IGNORE, reason="loop"), cfg)
    assert (r.outcome, r.reason) == (Outcome.IGNORED, "loop")
    assert count(store, Ticket) == 0
    assert count(store, MessageId) == 0


def test_attachments_on_disk_by_hash(make_config, store_url):
    # Files on disk: the directory backend (PostgreSQL defaults to the database).
    cfg = make_config(store_url, store={"blobs": "directory"})
    store = Store.from_config(cfg)
    store.init()
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    d = new(attachments=(attachment(png, "../../etc/passwd", "image/png"), attachment(png, "copy.png", "image/png"), attachment(b"hello", "h.txt", "text/plain")))
    r = record(store, d, cfg)
    sha = hashlib.sha256(png).hexdigest()
    show = store.show_ticket(r.ticket)
    atts = show["actions"][0]["attachments"]
    assert [(a["filename"], a["sha256"], a["size"], a["content_type"]) for a in atts] == [
        ("../../etc/passwd", sha, len(png), "image/png"),
        ("copy.png", sha, len(png), "image/png"),
        ("h.txt", hashlib.sha256(b"hello").hexdigest(), 5, "text/plain"),
    ]
    info, blob = store.attachment(atts[0]["id"])
    assert blob.read() == png
    path = store.attachments / sha[:2] / sha[2:4] / sha
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert info["ticket"] == r.ticket
    files = sorted(p for p in store.attachments.rglob("*") if p.is_file())
    assert len(files) == 2  # identical content stored once; nothing else (no temp files)
    # A second message with the same bytes reuses the file.
    record(store, followup(r.ticket, attachments=(attachment(png, "again.png"),)), cfg)
    assert len([p for p in store.attachments.rglob("*") if p.is_file()]) == 2
    assert count(store, Attachment) == 4
    store.close()


def test_duplicate_decision_returns_existing_ticket(store, cfg):
    d = new()
    n = record(store, d, cfg).ticket
    r = record(store, new(kind=Kind.DUPLICATE, message_key=d.message_key), cfg)
    assert (r.outcome, r.ticket) == (Outcome.DUPLICATE, n)


def test_known_view(store, cfg):
    d = new(cc=("carol@customer.org",))
    n = record(store, d, cfg).ticket
    seen = {}

    def decide(known):
        seen["ticket"] = known.ticket(n)
        seen["missing"] = known.ticket(n + 100)
        seen["by_ref"] = known.ticket_for_message_ids(["nope@x", f"<{d.message_id}>"])
        seen["by_none"] = known.ticket_for_message_ids(["nope@x"])
        seen["seen"] = known.message_seen(d.message_key)
        seen["unseen"] = known.message_seen("other@x")
        seen["secret"] = known.secret()
        return new(kind=Kind.IGNORE)

    store.record(decide, ENVELOPE, cfg, T0)
    info = seen["ticket"]
    assert (info.number, info.status, info.requester) == (n, "open", "alice@customer.org")
    assert info.participants == frozenset({"alice@customer.org", "carol@customer.org"})
    assert seen["missing"] is None
    assert seen["by_ref"] == n and seen["by_none"] is None
    assert seen["seen"] is True and seen["unseen"] is False
    assert seen["secret"] == store.secret()


def test_first_known_message_id_decides_the_ticket(store, cfg):
    """In-Reply-To (given first) wins over an older References entry that
    belongs to another ticket, whatever order the rows were stored in."""
    later = new()
    earlier = new()
    n_later = record(store, later, cfg).ticket
    n_earlier = record(store, earlier, cfg).ticket
    seen = {}

    def decide(known):
        seen["a"] = known.ticket_for_message_ids([later.message_id, earlier.message_id])
        seen["b"] = known.ticket_for_message_ids([earlier.message_id, later.message_id])
        return new(kind=Kind.IGNORE)

    store.record(decide, ENVELOPE, cfg, T0)
    assert (seen["a"], seen["b"]) == (n_later, n_earlier)


def test_late_joiner_gets_no_history(store, cfg):
    """Carol joins by replying to a forwarded update: her updates start after
    her own message, never with the earlier conversation."""
    n = record(store, new(text="ALICE-SECRET\n", new_text="ALICE-SECRET"), cfg).ticket
    carol = record(store, followup(n, author="carol@customer.org"), cfg, T0 + timedelta(seconds=5))
    with store.session(read_only=True) as s:
        mark = s.scalar(
            select(Participant.last_update_action_id).join(Person).where(Person.address == "carol@customer.org")
        )
    assert mark == carol.action_id


def test_redelivery_past_the_filter_is_recorded_once(store, cfg):
    """A second delivery whose Decision was made before the first committed
    (simulated: the Decision ignores message_seen) hits the unique key."""
    d = new()
    first = record(store, d, cfg)
    again = record(store, new(message_key=d.message_key, message_id=d.message_id), cfg)
    assert (again.outcome, again.ticket) == (Outcome.DUPLICATE, first.ticket)
    assert count(store, Ticket) == 1
    assert count(store, Action) == 1
    # The rolled-back attempt gave its ticket number back.
    assert record(store, new(), cfg).ticket == first.ticket + 1


def test_racing_duplicates(store, cfg, store_url):
    """Two deliveries of one message at once: one ticket, one DUPLICATE."""
    d = new()
    is_pg = store_url.startswith("postgresql")
    barrier = threading.Barrier(2, timeout=5)
    results = []

    def decide(known):
        if is_pg:
            # Both have looked (message not seen yet) before either writes.
            barrier.wait()
        return d

    def run():
        results.append(store.record(decide, ENVELOPE, cfg, T0))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(r.outcome.value for r in results) == ["created", "duplicate"]
    assert {r.ticket for r in results} == {1000}
    assert count(store, Ticket) == 1
    assert count(store, MessageId) == 1


def test_bounce_and_auto_reply_add_nobody(store, cfg):
    n = record(store, new(), cfg).ticket
    record(store, followup(n, author="mailer-daemon@mx.customer.org", public=False, send_ack=False, notify_team=False, flags=frozenset({"bounce"})), cfg)
    record(store, followup(n, author="noreply@customer.org", public=False, send_ack=False, notify_team=False, cc=("x@customer.org",), flags=frozenset({"auto"})), cfg)
    record(store, followup(n, author="ceo@example.com", public=False, flags=frozenset({"untrusted"})), cfg)
    assert [p["address"] for p in store.show_ticket(n)["participants"]] == ["alice@customer.org"]
    # The requester's own auto-reply still updates what we know of her thread.
    r = record(store, followup(n, public=False, message_id="ooo@customer.org", message_key="ooo@customer.org", flags=frozenset({"auto"})), cfg)
    assert r.outcome is Outcome.UPDATED
    with store.session(read_only=True) as s:
        (p,) = s.scalar(select(Ticket)).participants
        assert p.last_message_id == "ooo@customer.org"


@pytest.mark.parametrize("flag", ["list", "bulk"])
def test_new_ticket_from_list_or_bulk_mail_adds_no_cc(store, cfg, flag):
    n = record(store, new(author="list@lists.example.org", send_ack=False, cc=("member@customer.org",), flags=frozenset({flag})), cfg).ticket
    assert [(p["address"], p["role"]) for p in store.show_ticket(n)["participants"]] == [("list@lists.example.org", "requester")]


def test_participants_people_and_updates_through_a_ticket(store, cfg):
    """The per-message paths of participants, people and queued updates:
    a cc promoted to staff by a trusted message, a display name updated, an
    author whose message adds nobody still remembered for In-Reply-To, and a
    hidden ticket that postpones its queued update but queues no new one."""

    def state():
        with store.session(read_only=True) as s:
            t = s.scalar(select(Ticket))
            ps = {p.person.address: (p.role, p.last_message_id, p.person.staff, p.person.name) for p in t.participants}
            ups = [(o.recipient, o.due_at) for o in s.scalars(select(Outbox).where(Outbox.kind == "update").order_by(Outbox.id))]
            return ps, ups

    n = record(store, new(cc=("partner@partner.org",), message_id="m0@c", message_key="m0@c"), cfg).ticket
    assert state() == ({"alice@customer.org": ("requester", "m0@c", False, "Alice"), "partner@partner.org": ("cc", "", False, "")}, [])

    # A trusted message from the cc: now staff (role and person), no update for them.
    r = record(store, followup(n, author="partner@partner.org", author_name="Pat", staff=True, flags=frozenset({"staff"}), message_id="m1@p", message_key="m1@p"), cfg, T0 + timedelta(seconds=10))
    ps, ups = state()
    assert ps["partner@partner.org"] == ("staff", "m1@p", True, "Pat")
    assert ups == [("alice@customer.org", T0 + timedelta(seconds=130))]

    # A new display name (authenticated mail); an auto-reply adds nobody but is the author's newest message.
    record(store, followup(n, author_name="Alice Renamed", auth=VERIFIED, message_id="m2@c", message_key="m2@c"), cfg, T0 + timedelta(seconds=20))
    record(store, followup(n, flags=frozenset({"auto"}), send_ack=False, cc=("zed@customer.org",), message_id="m3@c", message_key="m3@c"), cfg, T0 + timedelta(seconds=30))
    ps, ups = state()
    assert ps["alice@customer.org"] == ("requester", "m3@c", False, "Alice Renamed")
    assert "zed@customer.org" not in ps
    assert ups == [("alice@customer.org", T0 + timedelta(seconds=150))]

    # Hidden from customers: the queued update is postponed, a newcomer joins but gets no row.
    assert store.set_visibility(n, False, cfg, T0 + timedelta(seconds=35)) is True
    record(store, staff_reply(n, cc=("newbie@customer.org",)), cfg, T0 + timedelta(seconds=40))
    ps, ups = state()
    assert ps["newbie@customer.org"][0] == "cc"
    assert ups == [("alice@customer.org", T0 + timedelta(seconds=160))]
    assert r.action_id is not None and store.show_ticket(n)["updated_at"]


def test_display_names_only_on_good_authority(store, cfg):
    """Authenticated mail renames; unverified mail names only a nameless
    person; forged mail never names anyone (docs/filter.md, rule "identity")."""
    n = record(store, new(author_name="Alice"), cfg).ticket

    def name(address="alice@customer.org"):
        with store.session(read_only=True) as s:
            return s.scalar(select(Person.name).where(Person.address == address))

    record(store, followup(n, author_name="Mallory", auth=FORGED, flags=frozenset({"forged"}), public=False), cfg)
    assert name() == "Alice"
    record(store, followup(n, author_name="Alice Unverified", auth=UNVERIFIED, flags=frozenset({"unverified"})), cfg)
    assert name() == "Alice"
    record(store, followup(n, author_name="Alice Meier", auth=VERIFIED), cfg)
    assert name() == "Alice Meier"
    # A forged first mail creates the person without the forger's name; a later
    # unverified mail may then name them.
    record(store, followup(n, author="eve@customer.org", author_name="Fake Eve", auth=FORGED, flags=frozenset({"forged"}), public=False), cfg)
    assert name("eve@customer.org") == ""
    record(store, followup(n, author="eve@customer.org", author_name="Eve", auth=UNVERIFIED, flags=frozenset({"stranger"}), public=False), cfg)
    assert name("eve@customer.org") == "Eve"


def test_forged_mail_joins_nobody_and_mails_nobody(store, cfg):
    n = record(store, new(), cfg).ticket
    before = outbox(store)
    r = record(
        store,
        followup(n, auth=FORGED, cc=("eve@evil.test",), public=False, notify_team=False, send_ack=False, flags=frozenset({"forged"})),
        cfg,
        T0 + timedelta(seconds=5),
    )
    assert r.outcome is Outcome.UPDATED
    assert outbox(store) == before
    shown = store.show_ticket(n)["actions"][-1]
    assert shown["flags"] == ["forged"] and shown["public"] is False
    assert shown["auth"] == {"spf": "fail", "dkim": "none", "dmarc": "fail", "verified": False}
    with store.session(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Person).where(Person.address == "eve@evil.test")) == 0


def test_auth_verdict_per_action(store, cfg):
    n = record(store, new(auth=VERIFIED), cfg).ticket
    record(store, followup(n), cfg)  # not checked at all
    first, second = store.show_ticket(n)["actions"]
    assert first["auth"] == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "verified": True}
    assert second["auth"] is None


def test_ack_goes_to_the_address_the_filter_chose(store, cfg):
    """RFC 3834 section 4: the envelope sender (Return-Path), not From:."""
    r = record(store, new(ack_to="bounces+alice@customer.org"), cfg)
    assert ("ack", "bounces+alice@customer.org", r.action_id) in outbox(store)
    r = record(store, new(send_ack=False, ack_to=""), cfg)
    assert [k for k, _r, a in outbox(store) if a == r.action_id] == ["alert"]


def test_forged_copy_first_does_not_swallow_the_genuine_mail(store, cfg):
    """Duplicates are (Message-ID, content digest): a forged mail reusing a
    genuine Message-ID is recorded beside it; the genuine one still counts,
    and its redelivery is still one duplicate."""
    forged = new(key="real@customer.org", digest="f" * 64, auth=FORGED, public=False, flags=frozenset({"forged"}))
    genuine = new(key="real@customer.org", digest="a" * 64)
    assert record(store, forged, cfg).outcome is Outcome.CREATED
    first = record(store, genuine, cfg)
    assert first.outcome is Outcome.CREATED
    again = record(store, new(key="real@customer.org", digest="a" * 64), cfg)
    assert (again.outcome, again.ticket) == (Outcome.DUPLICATE, first.ticket)
    assert count(store, MessageId) == 2


def test_known_view_new_tickets_and_sent_mail(store, cfg):
    from postdesk.store.view import KnownView

    record(store, new(), cfg, T0)
    record(store, new(), cfg, T0 + timedelta(minutes=30))
    record(store, new(auth=FORGED, public=False, flags=frozenset({"forged"})), cfg, T0 + timedelta(minutes=40))
    n = record(store, new(author="carol@customer.org"), cfg, T0 + timedelta(minutes=50)).ticket
    with store.engine.begin() as conn:
        conn.execute(
            Outbox.__table__.update().where(Outbox.kind == "ack", Outbox.recipient == "carol@customer.org"),
            {"state": "sent", "message_id": "pd.1.aa.bb@example.com", "sent_at": T0 + timedelta(minutes=51)},
        )
    with store.engine.connect() as conn:
        known = KnownView(conn, store.secret)
        assert known.new_tickets_since("alice@customer.org", T0) == 2
        assert known.new_tickets_since("ALICE@customer.org", T0 + timedelta(minutes=1)) == 1
        assert known.new_tickets_since("alice@customer.org", T0, include_forged=True) == 3
        assert known.new_tickets_since("nobody@customer.org", T0) == 0
        assert known.sent_mail(["<pd.1.aa.bb@example.com>", "other@x"]) == {"pd.1.aa.bb@example.com": ("carol@customer.org", n)}
        assert known.sent_mail([]) == {}
        assert known.sent_times("carol@customer.org", n) == (T0 + timedelta(minutes=51),)
        assert known.sent_times("alice@customer.org", n) == ()
        assert known.authored_times("Carol@customer.org", n) == (T0 + timedelta(minutes=50),)
        assert known.authored_times("carol@customer.org", n + 1) == ()
        key = store.show_ticket(n)["actions"][0]["message_id"]
        assert known.message_seen(key) and not known.message_seen(key, "0" * 64)


def test_filter_and_store_forged_copy_then_genuine_then_redelivery(store, cfg):
    """End to end through the real filter: a forged mail reusing the genuine
    Message-ID arrives first and is kept privately as forged; the genuine
    mail is still recorded; its redelivery is one duplicate."""
    from postdesk.filter import decide, parse

    genuine = (
        b"From: Alice <alice@customer.org>\r\nTo: support@example.com\r\nSubject: Printer\r\n"
        b"Message-ID: <same@customer.org>\r\n\r\nThe printer smokes.\r\n"
    )
    forged = genuine.replace(b"The printer smokes.", b"Send invoices to eve@evil.test.").replace(b"To: support", b"Cc: eve@evil.test\r\nTo: support")

    def ingest(raw, auth, now):
        env = ENVELOPE
        return store.record(lambda known: decide(parse(raw), env, known, cfg, now, auth=auth), env, cfg, now)

    r1 = ingest(forged, FORGED, T0)
    assert r1.outcome is Outcome.CREATED and r1.decision.flags == {"forged"}
    r2 = ingest(genuine, UNVERIFIED, T0 + timedelta(seconds=5))
    assert r2.outcome is Outcome.CREATED and r2.ticket != r1.ticket
    r3 = ingest(genuine, UNVERIFIED, T0 + timedelta(seconds=9))
    assert (r3.outcome, r3.ticket) == (Outcome.DUPLICATE, r2.ticket)
    forged_ticket = store.show_ticket(r1.ticket)
    assert forged_ticket["actions"][0]["public"] is False and forged_ticket["actions"][0]["auth"]["verified"] is False
    # a reply naming the shared Message-ID threads onto the genuine mail's ticket
    reply = b"From: alice@customer.org\r\nTo: support@example.com\r\nSubject: more\r\nIn-Reply-To: <same@customer.org>\r\nMessage-ID: <r@customer.org>\r\n\r\nAlso jams.\r\n"
    assert ingest(reply, UNVERIFIED, T0 + timedelta(seconds=20)).ticket == r2.ticket
    # the forged mail acknowledged nobody, alerted nobody; the genuine one is acknowledged (ack_unauthenticated in the tests' config)
    assert [(k, r) for k, r, a in outbox(store) if a == forged_ticket["actions"][0]["id"]] == []
    assert ("ack", "alice@customer.org") in [(k, r) for k, r, _a in outbox(store)]


def test_a_forgery_in_someones_name_is_not_their_earlier_reply(store, cfg):
    """authored_times feeds the auto-responder timing rule: a forged mail in
    Carol's name must not make her own next quick reply look automatic."""
    from postdesk.store.view import KnownView

    n = record(store, new(author="carol@customer.org"), cfg, T0).ticket
    forged = followup(n, author="carol@customer.org", auth=FORGED, public=False, flags=frozenset({"forged"}))
    record(store, forged, cfg, T0 + timedelta(minutes=5))
    with store.engine.connect() as conn:
        known = KnownView(conn, store.secret)
        assert known.authored_times("carol@customer.org", n, 2) == (T0,)


def test_an_unproven_staff_address_never_renames_the_staff_member(store, cfg):
    """Even with a verified From: (its domain's DMARC passes), mail from a
    staff address that is not proven staff (flag untrusted) keeps its hands
    off the staff member's display name."""
    n = record(store, new(author="bob@example.com", author_name="Bob Staff", staff=True), cfg).ticket
    record(store, followup(n, author="bob@example.com", author_name="Scammer", auth=VERIFIED, public=False, flags=frozenset({"untrusted"})), cfg)
    with store.session(read_only=True) as s:
        assert s.scalar(select(Person.name).where(Person.address == "bob@example.com")) == "Bob Staff"


def test_decision_lifecycle_fields_are_applied_and_reported(store, cfg):
    """status and owner from a Decision change the ticket, the clocks follow,
    and Result.changes names what changed (for the log line)."""
    n = record(store, new(), cfg).ticket
    later = T0 + timedelta(minutes=5)
    r = record(store, staff_reply(n, status="pending", owner="bob@example.com"), cfg, later)
    assert r.changes == {"owner": "bob@example.com", "status": "pending"}
    with store.session(read_only=True) as s:
        t = s.scalar(select(Ticket))
        assert (t.status, t.owner.address, t.last_public_staff_at, t.closed_at) == ("pending", "bob@example.com", later, None)
    # The same again changes nothing; a private staff note does not move the timer.
    r = record(store, staff_reply(n, public=False, status="pending", owner="bob@example.com"), cfg, later + timedelta(minutes=1))
    assert r.changes == {}
    closing = later + timedelta(minutes=2)
    r = record(store, staff_reply(n, public=False, status="closed", owner=""), cfg, closing)
    assert r.changes == {"owner": "none", "status": "closed"}
    with store.session(read_only=True) as s:
        t = s.scalar(select(Ticket))
        assert (t.status, t.owner_id, t.last_public_staff_at, t.closed_at) == ("closed", None, later, closing)
