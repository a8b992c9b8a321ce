# ruff: noqa: F811  (the fixtures desk and sink come from test_notifier)
"""Departments, owners, pending reminders, auto-close and bounce alerts,
against a real store (SQLite and PostgreSQL) and a real SMTP server
(aiosmtpd on loopback), with the notifier's clock injected: no test waits
for a timer."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from filter_support import MemoryKnown, make_draft, ticket_info
from sqlalchemy import select
from test_notifier import Clock, desk, rows, sink  # noqa: F401 (fixtures)
from test_store_support import T0, followup, new, record, staff_reply

from postdesk.filter.decision import Kind
from postdesk.filter.rules import bounce, take
from postdesk.notifier import policy
from postdesk.outbox_rows import Claimed, Person, Skip
from postdesk.store import lifecycle
from postdesk.store.models import Ticket

TEAM = "team@example.com"
BILLING = [
    {
        "name": "Billing",
        "display_name": "Example Billing",
        "addresses": ["billing@example.com"],
        "team": ["billing-team@example.com"],
        "reply_to": "billing@example.com",
    }
]
DSN = Path(__file__).parent / "data" / "mail" / "bounce-postfix-our-ack.eml"


def ticket(store, number: int = 1000) -> Ticket:
    with store.session(read_only=True) as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        assert t is not None
        return t


# --- departments -----------------------------------------------------------------


def test_department_ticket_mail_goes_out_as_the_department(desk, sink, store_url):
    cfg, store, worker, clock = desk(store_url, departments=BILLING)
    n = record(store, new(department="Billing"), cfg, T0).ticket
    assert worker.run_pass().sent == 2
    (ack,) = sink.to("alice@customer.org")
    (alert,) = sink.to("billing-team@example.com")
    assert not sink.to(TEAM)  # the default team hears nothing of Billing's tickets
    for got in (ack, alert):
        m = got.message
        assert got.sender == "billing@example.com"
        assert m["From"] == "Example Billing <billing@example.com>"
        assert m["Reply-To"] == "Example Billing <billing@example.com>"
        assert m["Subject"] == f"[#{n}] Printer on fire"
        assert m["X-Postdesk-Loop"] == "support@example.com"  # the installation's marker (rule "loop")
    assert ack.text.rstrip().endswith("Example Billing")
    # A customer's reply alerts Billing's team; the update to the customer is Billing's too.
    record(store, followup(n), cfg, T0 + timedelta(seconds=10))
    record(store, staff_reply(n, owner=""), cfg, T0 + timedelta(seconds=20))
    clock.now = T0 + timedelta(seconds=200)
    worker.run_pass()
    assert len(sink.to("billing-team@example.com")) == 2
    (update,) = [g for g in sink.to("alice@customer.org") if "wrote on" in g.text]
    assert update.message["From"] == "Example Billing <billing@example.com>"
    assert store.list_tickets(department="Billing")[0]["department"] == "Billing"
    assert store.list_tickets(department="") == []


def test_default_department_is_null_in_json(desk, store_url):
    cfg, store, _worker, _clock = desk(store_url, departments=BILLING)
    record(store, new(), cfg, T0)
    (t,) = store.list_tickets()
    assert t["department"] is None and t["owner"] is None
    assert store.show_ticket(1000)["department"] is None


# --- owners ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode, expected", [("owner", ["bob@example.com"]), ("owner_and_team", ["bob@example.com", TEAM])])
def test_customer_replies_alert_the_owner(desk, sink, store_url, mode, expected):
    cfg, store, worker, clock = desk(store_url, lifecycle={"owner_alerts": mode})
    n = record(store, new(), cfg, T0).ticket
    worker.run_pass()
    r = record(store, staff_reply(n, owner="bob@example.com"), cfg, T0 + timedelta(seconds=5))
    assert r.changes == {"owner": "bob@example.com"}
    assert store.show_ticket(n)["owner"] == "bob@example.com"
    sink.got.clear()
    record(store, followup(n), cfg, T0 + timedelta(seconds=10))
    assert sorted(o.recipient for o in rows(store, kind="alert", state="queued")) == sorted(expected)
    clock.now = T0 + timedelta(seconds=11)
    worker.run_pass()
    assert sorted(r for g in sink.got for r in g.recipients if "example.com" in r) == sorted(expected)
    # Unassigned: the team again.
    assert store.assign(n, None, cfg, T0 + timedelta(seconds=12)) is True
    record(store, followup(n), cfg, T0 + timedelta(seconds=13))
    assert sorted(o.recipient for o in rows(store, kind="alert", state="queued")) == [TEAM]


def test_assign_creates_the_staff_person_and_reports_no_change(desk, store_url):
    cfg, store, _worker, _clock = desk(store_url)
    n = record(store, new(), cfg, T0).ticket
    assert store.assign(n, "Carol@Example.com", cfg, T0) is True
    assert store.assign(n, "carol@example.com", cfg, T0) is False
    assert store.show_ticket(n)["owner"] == "carol@example.com"
    with pytest.raises(LookupError):
        store.assign(9999, None, cfg, T0)


TAKE_MAIL = "From: bob@example.com\nTo: support@example.com\nSubject: Re: [#1000] x\nMessage-ID: <t1@example.com>\n\nOn it."


@pytest.mark.parametrize(
    "staff, public, owner, setting, command_owner, expected",
    [
        (True, True, "", True, None, "bob@example.com"),  # the first public staff reply takes it
        (True, False, "", True, None, None),  # a private note does not
        (True, True, "carol@example.com", True, None, None),  # already owned
        (False, True, "", True, None, None),  # not proven staff
        (True, True, "", False, None, None),  # take_on_reply = false
        (True, True, "", True, "dave@example.com", "dave@example.com"),  # a command's owner wins
    ],
)
def test_rule_take(make_config, staff, public, owner, setting, command_owner, expected):
    cfg = make_config(lifecycle={"take_on_reply": setting})
    info = ticket_info(1000, "c@cust.org")
    info = type(info)(info.number, info.status, info.requester, info.participants, owner=owner)
    d = make_draft(TAKE_MAIL, cfg, known=MemoryKnown([info]))
    d.ticket, d.staff, d.public, d.owner = 1000, staff, public, command_owner
    assert take.apply(d) is None
    assert d.owner == expected


def test_rule_take_leaves_new_tickets_alone(make_config):
    d = make_draft(TAKE_MAIL, make_config())
    d.staff = True
    take.apply(d)
    assert d.kind is Kind.NEW and d.owner is None


# --- pending: one reminder, then the auto-close -------------------------------------


def test_pending_ticket_is_reminded_once_then_closed(desk, sink, store_url, caplog):
    cfg, store, worker, clock = desk(store_url, lifecycle={"pending_reminder": 3600, "pending_close": 7200})
    n = record(store, new(key="first@customer.org"), cfg, T0).ticket
    worker.run_pass()
    asked = T0 + timedelta(seconds=60)
    record(store, staff_reply(n, status="pending", new_text="Which model is it?"), cfg, asked)
    assert ticket(store).last_public_staff_at == asked
    clock.now = asked + timedelta(seconds=200)
    worker.run_pass()  # the staff reply reaches the customer
    sink.got.clear()

    # A private note does not restart the timer (nor does anything but public staff mail).
    record(store, staff_reply(n, public=False, new_text="Customer is slow."), cfg, asked + timedelta(seconds=1000))
    clock.now = asked + timedelta(seconds=3599)
    assert (worker.run_pass().reminded, sink.got) == (0, [])

    clock.now = asked + timedelta(seconds=3600)
    stats = worker.run_pass()
    assert (stats.reminded, stats.closed, stats.sent) == (1, 0, 1)
    (reminder,) = sink.got
    m = reminder.message
    assert reminder.recipients == ["alice@customer.org"]
    assert m["Subject"] == f"[#{n}] Printer on fire" and m["Auto-Submitted"] == "auto-generated"
    # Threaded under the customer's own last message (RFC 3834 section 3.1.5).
    assert m["In-Reply-To"] == m["References"] == "<first@customer.org>"
    assert "waiting for your answer" in reminder.text and "closed in about 1 hour" in reminder.text
    assert ticket(store).reminded_at == clock.now
    assert any("reminder" in a["flags"] and not a["public"] for a in store.show_ticket(n)["actions"])

    # ONE reminder: later passes send nothing more until the close is due.
    clock.now = asked + timedelta(seconds=5000)
    assert (worker.run_pass().reminded, len(sink.got)) == (0, 1)

    caplog.set_level(logging.INFO, logger="postdesk.notifier")
    clock.now = asked + timedelta(seconds=7200)
    stats = worker.run_pass()
    assert (stats.closed, stats.reminded) == (1, 0)
    t = ticket(store)
    assert (t.status, t.closed_at) == ("closed", clock.now)
    assert f"ticket={n} status=closed" in caplog.text
    last = store.show_ticket(n)["actions"][-1]
    assert (last["kind"], last["public"], "auto-close" in last["flags"]) == ("status", True, True)
    assert last["text"].startswith("Closed automatically: no answer for 2 hours")
    # The status mail follows status_change_emails, after the quiet period.
    clock.now += timedelta(seconds=120)
    worker.run_pass()
    (closed,) = [g for g in sink.got if "Closed automatically" in g.text]
    assert closed.recipients == ["alice@customer.org"]
    clock.now += timedelta(days=30)
    assert worker.run_pass().closed == 0


def test_public_staff_reply_restarts_the_pending_timer(desk, store_url):
    cfg, store, worker, clock = desk(store_url, lifecycle={"pending_reminder": 100, "pending_close": 1000})
    n = record(store, new(), cfg, T0).ticket
    record(store, staff_reply(n, status="pending"), cfg, T0)
    record(store, staff_reply(n), cfg, T0 + timedelta(seconds=900))
    clock.now = T0 + timedelta(seconds=1000)
    assert worker.run_pass().closed == 0
    assert ticket(store).status == "pending"
    clock.now = T0 + timedelta(seconds=1900)
    assert worker.run_pass().closed == 1


def test_status_change_clears_the_reminder_and_unreminded_close_is_direct(desk, sink, store_url):
    """Reopened and set pending again: a fresh period gets its own reminder.
    A ticket past pending_close when first seen is closed without a reminder."""
    cfg, store, worker, clock = desk(store_url, lifecycle={"pending_reminder": 100, "pending_close": 1000})
    n = record(store, new(), cfg, T0).ticket
    record(store, staff_reply(n, status="pending"), cfg, T0)
    clock.now = T0 + timedelta(seconds=100)
    assert worker.run_pass().reminded == 1
    assert store.set_status(n, "open", cfg, clock.now) and store.set_status(n, "pending", cfg, clock.now)
    assert ticket(store).reminded_at is None
    record(store, staff_reply(n), cfg, clock.now)
    clock.now += timedelta(seconds=100)
    assert worker.run_pass().reminded == 1
    m = record(store, new(author="zed@customer.org"), cfg, T0).ticket
    record(store, staff_reply(m, status="pending"), cfg, T0)
    sink.got.clear()
    clock.now = T0 + timedelta(days=1)
    stats = worker.run_pass()
    assert (stats.closed, stats.reminded) == (2, 0)
    assert not [g for g in sink.got if "waiting for your answer" in g.text]


def test_lifecycle_works_in_batches(desk, store_url):
    cfg, store, _worker, _clock = desk(store_url, lifecycle={"pending_reminder": 10, "pending_close": 100})
    for i in range(7):
        n = record(store, new(author=f"c{i}@customer.org"), cfg, T0).ticket
        record(store, staff_reply(n, status="pending"), cfg, T0)
    stats = lifecycle.run(store, cfg, T0 + timedelta(seconds=10), batch=3)
    assert (stats.reminded, stats.closed) == (7, 0)
    assert len(rows(store, kind="reminder")) == 7
    stats = lifecycle.run(store, cfg, T0 + timedelta(seconds=100), batch=3)
    assert (stats.reminded, stats.closed) == (0, 7)


def test_zero_turns_reminder_and_close_off(desk, store_url):
    cfg, store, worker, clock = desk(store_url, lifecycle={"pending_reminder": 0, "pending_close": 0})
    n = record(store, new(), cfg, T0).ticket
    record(store, staff_reply(n, status="pending"), cfg, T0)
    clock.now = T0 + timedelta(days=365)
    stats = worker.run_pass()
    assert (stats.reminded, stats.closed) == (0, 0)


def test_reminder_policy_skips_a_ticket_no_longer_pending(config):
    c = Claimed(1, 1, "reminder", 1, 1000, "s", "open", True, Person("alice@customer.org"), T0)
    assert isinstance(policy.reminder(c, config), Skip)
    c = Claimed(1, 1, "reminder", 1, 1000, "s", "pending", False, Person("alice@customer.org"), T0)
    assert policy.reminder(c, config).reason == "ticket not visible to customers"


# --- bounces of our mail reach a person -------------------------------------------------


def _dsn_draft(cfg, participants=("alice@customer.example",)):
    from postdesk.filter.decision import Envelope
    from postdesk.msgid import make_message_id

    known = MemoryKnown([ticket_info(1042, "alice@customer.example", participants)], ids={})
    # The corpus file names our own mail as {{msgid:1042}}: the bounce rule
    # alerts only about mail it can prove was ours (our signed Message-ID).
    raw = DSN.read_bytes().replace(b"{{msgid:1042}}", make_message_id(1042, b"test-secret", "example.com").encode())
    d = make_draft(raw, cfg, envelope=Envelope("", ("support@example.com",)), known=known)
    d.ticket = 1042
    return d


def test_bounce_rule_reads_the_failed_recipient_from_the_dsn(config):
    d = _dsn_draft(config)
    assert bounce.apply(d) is None
    assert d.bounce == (("alice@customer.example", "5.2.2", "x-unix; mailbox quota exceeded (user alice is over quota)"),)
    assert (d.public, d.notify_team, "bounce" in d.flags) == (False, False, True)


def test_bounce_naming_someone_not_on_the_ticket_alerts_nobody(config):
    d = _dsn_draft(config)
    d.known = MemoryKnown([ticket_info(1042, "bob@customer.example")])
    bounce.apply(d)
    assert d.bounce == ()


def test_delayed_delivery_is_no_failure():
    from postdesk.filter import parse

    raw = DSN.read_bytes().replace(b"Action: failed\nStatus: 5.2.2", b"Action: delayed\nStatus: 4.2.2")
    assert b"Action: delayed" in raw
    assert bounce.failed_recipients(parse(raw).message) == ()


@pytest.mark.parametrize("owned", [False, True])
def test_permanent_bounce_gives_one_alert_to_owner_or_team(desk, sink, store_url, owned):
    cfg, store, worker, clock = desk(store_url, departments=BILLING)
    n = record(store, new(department="Billing"), cfg, T0).ticket
    if owned:
        store.assign(n, "bob@example.com", cfg, T0)
    worker.run_pass()
    sink.got.clear()
    failed = (("alice@customer.org", "5.1.1", "smtp; 550 5.1.1 <alice@customer.org>: no such user"),)
    d = followup(
        n, author="mailer-daemon@mx.customer.org", public=False, send_ack=False, notify_team=False, flags=frozenset({"bounce"}), bounce=failed
    )
    record(store, d, cfg, T0 + timedelta(seconds=30))
    clock.now = T0 + timedelta(seconds=31)
    assert worker.run_pass().sent == 1
    (alert,) = sink.got
    assert alert.recipients == (["bob@example.com"] if owned else ["billing-team@example.com"])
    m = alert.message
    assert m["From"] == "Example Billing <billing@example.com>" and m["Auto-Submitted"] == "auto-generated"
    assert m["Subject"] == f"[#{n}] Printer on fire"
    text = alert.text
    assert "could not be delivered" in text and "alice@customer.org" in text and "5.1.1" in text and "no such user" in text
    # The bounce is a private action on the ticket, with what failed as its new text.
    last = store.show_ticket(n)["actions"][-1]
    assert (last["public"], "bounce" in last["flags"]) == (False, True)
    assert "Status: 5.1.1" in last["new_text"]


def test_a_second_bounce_for_the_same_address_alerts_nobody_again(desk, store_url):
    cfg, store, _worker, _clock = desk(store_url)
    n = record(store, new(), cfg, T0).ticket
    failed = (("alice@customer.org", "5.1.1", "no such user"),)
    bounced = dict(author="mailer-daemon@mx.customer.org", public=False, send_ack=False, notify_team=False, flags=frozenset({"bounce"}))
    record(store, followup(n, bounce=failed, **bounced), cfg, T0)
    record(store, followup(n, bounce=failed, **bounced), cfg, T0 + timedelta(seconds=60))
    assert [o.recipient for o in rows(store, kind="bounce-alert")] == [TEAM]
    # Another address on the same ticket is news again.
    record(store, followup(n, bounce=(("bob@customer.org", "5.1.1", "gone"),), **bounced), cfg, T0 + timedelta(seconds=90))
    assert len(rows(store, kind="bounce-alert")) == 2


def test_a_disbelieved_bounce_quoting_the_alert_line_does_not_silence_a_real_one(desk, store_url):
    """A report the filter did not believe (no failed recipients kept) is
    stored with its sender's own text; that text naming the line an alert
    writes must not count as 'reported before'."""
    cfg, store, _worker, _clock = desk(store_url)
    n = record(store, new(), cfg, T0).ticket
    bounced = dict(author="mailer-daemon@mx.customer.org", public=False, send_ack=False, notify_team=False, flags=frozenset({"bounce"}))
    forged = "Our mail to alice@customer.org could not be delivered."
    record(store, followup(n, new_text=forged, **bounced), cfg, T0)
    assert "undelivered" not in store.show_ticket(n)["actions"][-1]["flags"]
    record(store, followup(n, bounce=(("alice@customer.org", "5.1.1", "no such user"),), **bounced), cfg, T0 + timedelta(seconds=60))
    assert [o.recipient for o in rows(store, kind="bounce-alert")] == [TEAM]
    assert "undelivered" in store.show_ticket(n)["actions"][-1]["flags"]


def test_the_auto_close_mail_speaks_the_customers_language(desk, sink, store_url):
    """The stored note is English (for staff); the customer's update words
    the close in the mail's language."""
    cfg, store, worker, clock = desk(store_url, lifecycle={"pending_reminder": 0, "pending_close": 7200}, templates={"language": "de"})
    n = record(store, new(), cfg, T0).ticket
    record(store, staff_reply(n, status="pending", new_text="Welches Modell ist es?"), cfg, T0)
    clock.now = T0 + timedelta(seconds=7200)
    assert worker.run_pass().closed == 1
    clock.now += timedelta(seconds=120)
    worker.run_pass()
    (closed,) = [g for g in sink.got if "Automatisch geschlossen" in g.text]
    assert closed.recipients == ["alice@customer.org"]
    assert "Automatisch geschlossen: keine Antwort seit 2 Stunden, während das Ticket auf Ihre Antwort wartete." in closed.text
    assert not [g for g in sink.got if "Closed automatically" in g.text]


def test_a_diagnostic_quoting_the_alert_line_does_not_silence_a_real_one(desk, store_url):
    """A report's Diagnostic-Code is the sender's text: quoting 'Our mail to
    bob@... could not be delivered.' there must not count as bob reported."""
    cfg, store, _worker, _clock = desk(store_url)
    n = record(store, new(cc=("bob@customer.org",)), cfg, T0).ticket
    bounced = dict(author="mailer-daemon@mx.customer.org", public=False, send_ack=False, notify_team=False, flags=frozenset({"bounce"}))
    quoting = (("alice@customer.org", "5.1.1", "Our mail to bob@customer.org could not be delivered."),)
    record(store, followup(n, bounce=quoting, **bounced), cfg, T0)
    record(store, followup(n, bounce=(("bob@customer.org", "5.1.1", "no such user"),), **bounced), cfg, T0 + timedelta(seconds=60))
    assert [o.recipient for o in rows(store, kind="bounce-alert")] == [TEAM, TEAM]


def test_a_forged_mail_naming_the_customer_does_not_set_what_our_mail_answers(desk, store_url):
    """In-Reply-To of updates, reminders and refusals is the participant's
    own newest message: a forgery or a delivery report naming their address
    must not choose it."""
    from postdesk.store.models import Participant

    cfg, store, _worker, _clock = desk(store_url)
    n = record(store, new(key="first@customer.org"), cfg, T0).ticket
    record(store, followup(n, key="phish@evil.example", public=False, flags=frozenset({"forged"})), cfg, T0 + timedelta(seconds=10))
    record(store, followup(n, key="dsn@mx.customer.org", public=False, flags=frozenset({"bounce"})), cfg, T0 + timedelta(seconds=20))
    with store.session(read_only=True) as s:
        assert s.scalars(select(Participant.last_message_id)).all() == ["first@customer.org"]
    record(store, followup(n, key="second@customer.org"), cfg, T0 + timedelta(seconds=30))
    with store.session(read_only=True) as s:
        assert s.scalars(select(Participant.last_message_id)).all() == ["second@customer.org"]
