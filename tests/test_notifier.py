"""The notifier against a real store and a real SMTP server (aiosmtpd on loopback).

Tickets are made through ``Store.record`` with hand-built Decisions, so the
outbox rows are the ones the store really writes.  The clock is injected:
the debounce and retry tests step it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser

import pytest
from sqlalchemy import select
from test_store_support import T0, attachment, followup, new, record, staff_reply

from postdesk.msgid import ticket_from_message_id
from postdesk.notifier.compose import REPLY_MARKER
from postdesk.notifier.worker import Worker
from postdesk.store import Store, outbox
from postdesk.store.models import Action, MessageId, Outbox, Participant
from postdesk.testing.wait import free_port

TEAM = "team@example.com"


# --- an SMTP sink that answers like Postfix, or fails on demand -------------------


@dataclass
class Got:
    sender: str
    recipients: list[str]
    data: bytes
    queue_id: str

    @property
    def message(self):
        return BytesParser(policy=policy.default).parsebytes(self.data)

    @property
    def text(self) -> str:
        msg = self.message
        body = msg.get_body(("plain",)) if msg.is_multipart() else msg
        return body.get_content()


class SinkHandler:
    """Stores each mail and answers "250 2.0.0 Ok: queued as <id>", as Postfix does.

    ``replies``: answers to use for the next DATA commands instead (e.g.
    "451 4.3.0 try later", "550 5.1.1 no such user").  ``delay``: seconds to
    hold each DATA (for the SIGTERM test); ``in_flight`` is set meanwhile.
    """

    def __init__(self):
        self.got: list[Got] = []
        self.replies: list[str] = []
        self.delay = 0.0
        self.in_flight = threading.Event()
        self._n = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        self.in_flight.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            if self.replies:
                return self.replies.pop(0)
            self._n += 1
            qid = f"4BxT{self._n:06d}"
            self.got.append(Got(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content), qid))
        return f"250 2.0.0 Ok: queued as {qid}"

    def to(self, address: str) -> list[Got]:
        return [g for g in self.got if address in g.recipients]


@pytest.fixture
def sink():
    from aiosmtpd.controller import Controller

    handler = SinkHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), data_size_limit=None)
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        return self.now + timedelta(seconds=seconds)


@pytest.fixture
def desk(make_config, sink, tmp_path):
    """desk(store_url=None, **sections) -> (config, store, worker, clock)."""
    made = []

    def make(store_url=None, **sections):
        notifier = {"smtp": f"127.0.0.1:{sink.port}", "quiet_period": 120, "tick": 1}
        notifier.update(sections.pop("notifier", {}))
        cfg = make_config(store_url, notifier=notifier, **sections)
        store = Store.from_config(cfg)
        store.init(cfg.organization.first_ticket_number)
        clock = Clock(T0)
        worker = Worker(cfg, store, clock)
        made.append(store)
        return cfg, store, worker, clock

    yield make
    for s in made:
        s.close()


def rows(store, **where) -> list[Outbox]:
    with store.session(read_only=True) as s:
        q = select(Outbox).order_by(Outbox.id)
        for k, v in where.items():
            q = q.where(getattr(Outbox, k) == v)
        return list(s.scalars(q))


# --- acknowledgement and team alert -----------------------------------------------


def test_new_ticket_gives_ack_and_alert(desk, sink, caplog):
    cfg, store, worker, clock = desk()
    d = new(attachments=(attachment(b"%PDF-1.4 report", "report.pdf", "application/pdf"),))
    r = record(store, d, cfg, now=T0)
    caplog.set_level(logging.INFO, logger="postdesk.notifier")

    stats = worker.run_pass()

    assert stats.sent == 2
    (ack,) = sink.to("alice@customer.org")
    (alert,) = sink.to(TEAM)
    assert ack.sender == alert.sender == "support@example.com"
    for got, auto in ((ack, "auto-replied"), (alert, "auto-generated")):
        m = got.message
        assert m["Subject"] == "[#1000] Printer on fire"
        assert m["From"] == "Example Inc <support@example.com>"
        assert m["Reply-To"] == "Example Inc <support@example.com>"
        assert m["Auto-Submitted"] == auto
        assert m["X-Postdesk-Loop"] == "support@example.com"
        assert m["X-Postdesk-Ticket"] == "1000"
        assert m["In-Reply-To"] == m["References"] == f"<{d.message_id}>"
        assert m["Date"]
        assert ticket_from_message_id(m["Message-ID"].strip("<>"), store.secret()) == 1000
        assert got.text.splitlines()[0] == REPLY_MARKER
        assert m.get_content_charset() == "utf-8"
    assert ack.message["To"] == "Alice <alice@customer.org>"
    assert "[#1000]" in ack.text
    # The alert: who (name and address), the subject, what they wrote, attachments listed.
    assert "New ticket [#1000] from Alice <alice@customer.org>" in alert.text
    assert "Subject: Printer on fire" in alert.text
    assert "It is on fire." in alert.text
    assert "report.pdf (application/pdf, 15 bytes)" in alert.text
    assert not alert.message.is_multipart()  # listed, not attached

    sent = rows(store)
    assert {(o.kind, o.state) for o in sent} == {("ack", "sent"), ("alert", "sent")}
    by_kind = {o.kind: o for o in sent}
    assert by_kind["ack"].queue_id == ack.queue_id
    assert by_kind["ack"].message_id == ack.message["Message-ID"].strip("<>")
    # Our Message-IDs are recorded, so a reply with only In-Reply-To threads.
    with store.session(read_only=True) as s:
        ours = {m.key: m.ticket_id for m in s.scalars(select(MessageId).where(MessageId.ours.is_(True)))}
    assert set(ours) == {o.message_id for o in sent}
    # One Postfix-style line per mail, the queue id first.
    lines = [r.getMessage() for r in caplog.records if "kind=ack" in r.getMessage()]
    assert lines == [f"{ack.queue_id}: to=<alice@customer.org> ticket=1000 kind=ack msgid=<{by_kind['ack'].message_id}> status=sent"]
    assert r.ticket == 1000

    # Nothing is sent twice.
    assert worker.run_pass().sent == 0
    assert len(sink.got) == 2


def test_alert_for_customer_reply(desk, sink):
    cfg, store, worker, clock = desk()
    record(store, new(), cfg, now=T0)
    worker.run_pass()
    sink.got.clear()
    record(store, followup(1000, text="Still burning.\n", new_text="Still burning."), cfg, now=clock.at(30))
    clock.now = clock.at(30)
    worker.run_pass()
    (alert,) = sink.to(TEAM)
    assert "New reply on ticket [#1000] from Alice <alice@customer.org>" in alert.text
    assert "Still burning." in alert.text
    assert not sink.to("alice@customer.org")  # her own reply is not mailed back (no update row)


def test_ack_rate_limit_per_sender(desk, sink):
    cfg, store, worker, clock = desk(notifier={"ack_limit": 2, "ack_window": 3600})
    for i in range(3):
        record(store, new(subject=f"Problem {i}"), cfg, now=clock.at(i))
    clock.now = clock.at(5)
    worker.run_pass()
    assert len(sink.to("alice@customer.org")) == 2
    assert [o.state for o in rows(store, kind="ack")] == ["sent", "sent", "suppressed"]
    assert "rate limit" in rows(store, kind="ack")[2].last_error
    assert len(sink.to(TEAM)) == 3  # the team hears of every ticket
    # After the window, the sender gets acknowledgements again.
    record(store, new(subject="Later"), cfg, now=clock.at(3700))
    clock.now = clock.at(3700)
    worker.run_pass()
    assert len(sink.to("alice@customer.org")) == 3


@pytest.mark.parametrize(
    "recipient, flags, reason",
    [
        ("support@example.com", "", "own address"),
        ("help@example.com", "", "own address"),
        ("", "", "null sender"),
        ("mailer-daemon@customer.org", "", "null sender"),
        ("alice@customer.org", "auto", "auto-submitted"),
        ("alice@customer.org", "list", "auto-submitted"),
    ],
)
def test_ack_never_to_ourselves_null_sender_or_auto_mail(desk, sink, recipient, flags, reason):
    cfg, store, worker, clock = desk()
    record(store, new(), cfg, now=T0)
    with store.session() as s:
        row = s.scalar(select(Outbox).where(Outbox.kind == "ack"))
        row.recipient = recipient
        s.get(Action, row.action_id).flags = flags
    worker.run_pass()
    assert [g.recipients for g in sink.got] == [[TEAM]]
    (ack,) = rows(store, kind="ack")
    assert ack.state == "suppressed" and reason in ack.last_error


# --- customer updates -------------------------------------------------------------


def _ticket_with_cc(desk, **kw):
    cfg, store, worker, clock = desk(**kw)
    record(store, new(cc=("carol@customer.org",)), cfg, now=T0)
    worker.run_pass()  # ack + alert
    return cfg, store, worker, clock


def test_debounce_one_update_after_quiet_period(desk, sink):
    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    start = clock.at(600)
    for i, offset in enumerate((0, 60, 150)):
        record(store, staff_reply(1000, text=f"Reply {i}\n", new_text=f"Reply {i}", author_name="Bob Staff"), cfg, now=start + timedelta(seconds=offset))
    # Passes every few seconds until just before 150 + 120 = 270 s: nothing.
    for t in list(range(0, 270, 15)) + [269]:
        clock.now = start + timedelta(seconds=t)
        worker.run_pass()
        assert sink.got == [], f"update sent at {t} s"
    clock.now = start + timedelta(seconds=270)
    worker.run_pass()
    (alice,) = sink.to("alice@customer.org")
    (carol,) = sink.to("carol@customer.org")
    for got in (alice, carol):
        text = got.text
        assert text.index("Reply 0") < text.index("Reply 1") < text.index("Reply 2")  # oldest first
        assert "Bob Staff wrote on" in text and "bob@example.com" not in text
        assert got.message["Auto-Submitted"] == "auto-generated"
        assert got.message["Subject"] == "[#1000] Printer on fire"
    # Threaded under the customer's own message; carol wrote none.
    assert alice.message["In-Reply-To"].startswith("<")
    assert carol.message["In-Reply-To"] is None
    clock.now = clock.at(600)
    worker.run_pass()
    assert len(sink.got) == 2
    with store.session(read_only=True) as s:
        marks = {p.person.address: p.last_update_action_id for p in s.scalars(select(Participant))}
        newest = max(a.id for a in s.scalars(select(Action)))
    assert marks["alice@customer.org"] == marks["carol@customer.org"] == newest


def test_update_carries_only_new_actions(desk, sink):
    cfg, store, worker, clock = _ticket_with_cc(desk)
    record(store, staff_reply(1000, text="First answer\n", new_text="First answer"), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    sink.got.clear()
    record(store, staff_reply(1000, text="Second answer\n", new_text="Second answer"), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    (alice,) = sink.to("alice@customer.org")
    assert "Second answer" in alice.text and "First answer" not in alice.text


def test_never_the_authors_own_words_nor_what_they_got_directly(desk, sink):
    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    # Staff answers; then alice replies to all (carol in Cc, so she has it).
    record(store, staff_reply(1000, text="Try turning it off.\n", new_text="Try turning it off."), cfg, now=clock.at(10))
    record(store, followup(1000, text="Done, still burns.\n", new_text="Done, still burns.", cc=("carol@customer.org",)), cfg, now=clock.at(20))
    clock.now = clock.at(200)
    worker.run_pass()
    alice = sink.to("alice@customer.org")
    carol = sink.to("carol@customer.org")
    assert len(alice) == len(carol) == 1
    assert "Try turning it off." in alice[0].text and "still burns" not in alice[0].text
    assert "Try turning it off." in carol[0].text and "still burns" not in carol[0].text


def test_private_action_never_leaks(desk, sink):
    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    public_bytes = bytes(range(256)) * 40 + b"public"
    secret_bytes = b"TOP SECRET BYTES " * 50
    record(
        store,
        staff_reply(1000, text="Here is the manual.\n", new_text="Here is the manual.", attachments=(attachment(public_bytes, "manual.bin"),)),
        cfg,
        now=clock.at(10),
    )
    record(
        store,
        staff_reply(
            1000,
            text="[pvt] internal: customer is on the naughty list\n",
            new_text="[pvt] internal: customer is on the naughty list",
            public=False,
            flags=frozenset({"staff", "pvt"}),
            attachments=(attachment(secret_bytes, "internal-notes.txt", "text/plain"),),
        ),
        cfg,
        now=clock.at(20),
    )
    clock.now = clock.at(300)
    worker.run_pass()
    assert len(sink.got) == 2
    for got in sink.got:
        assert b"naughty" not in got.data and "naughty" not in got.text
        assert "internal-notes" not in got.data.decode("ascii", "replace")
        parts = list(got.message.iter_attachments())
        assert [p.get_filename() for p in parts] == ["manual.bin"]
        assert parts[0].get_content() == public_bytes  # byte-identical
        assert secret_bytes not in got.data


def test_update_never_falls_back_to_the_whole_text(desk, sink):
    """An action with no new text (the filter found only quotes) must not
    bring its whole text, with the quoted history, into customer mail."""
    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    quoted = "> [pvt] SECRET: customer is on the naughty list\n> Team alert for [#1000]\n"
    record(store, staff_reply(1000, text=quoted, new_text=""), cfg, now=clock.at(10))
    record(
        store,
        staff_reply(1000, text=quoted + "> again\n", new_text="", attachments=(attachment(b"manual", "manual.bin"),)),
        cfg,
        now=clock.at(20),
    )
    clock.now = clock.at(300)
    worker.run_pass()
    assert sorted(r for g in sink.got for r in g.recipients) == ["alice@customer.org", "carol@customer.org"]
    for got in sink.got:
        assert b"SECRET" not in got.data and "SECRET" not in got.text and "naughty" not in got.text
        assert "(no text)" in got.text
        assert "(no text; see the attachments)" in got.text
        assert [p.get_filename() for p in got.message.iter_attachments()] == ["manual.bin"]


def test_private_only_changes_send_nothing(desk, sink):
    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    record(store, staff_reply(1000, text="note\n", new_text="note", public=False, flags=frozenset({"staff", "pvt"})), cfg, now=clock.at(10))
    clock.now = clock.at(1000)
    worker.run_pass()
    assert sink.got == []


@pytest.mark.parametrize("switch", [True, False])
def test_status_change_emails_switch(desk, sink, switch):
    cfg, store, worker, clock = _ticket_with_cc(desk, organization={"status_change_emails": switch})
    sink.got.clear()
    record(store, staff_reply(1000, text="Fixed it.\n[closed]\n", new_text="Fixed it.", close=True, flags=frozenset({"staff", "closed"})), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    (alice,) = sink.to("alice@customer.org")
    assert "Fixed it." in alice.text
    assert ("Status changed from open to closed" in alice.text) is switch
    # A status change alone: a mail with the status line, or no mail at all.
    sink.got.clear()
    store.set_status(1000, "open", cfg, clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    alice = sink.to("alice@customer.org")
    if switch:
        assert len(alice) == 1 and "Status changed from closed to open" in alice[0].text
    else:
        assert alice == []


def test_nothing_for_a_ticket_not_visible_to_customers(desk, sink):
    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    record(store, staff_reply(1000, text="Answer A\n", new_text="Answer A"), cfg, now=clock.at(10))
    store.set_visibility(1000, False, cfg, clock.at(11))
    clock.now = clock.at(200)
    worker.run_pass()
    assert sink.got == []
    assert {o.state for o in rows(store, kind="update")} <= {"suppressed"}
    # Made visible again: the customer then hears about what they missed.
    store.set_visibility(1000, True, cfg, clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    (alice,) = sink.to("alice@customer.org")
    assert "Answer A" in alice.text


# --- delivery failures ------------------------------------------------------------


def test_4xx_is_retried_on_a_later_pass(desk, sink, caplog):
    cfg, store, worker, clock = desk()
    record(store, new(), cfg, now=T0)
    sink.replies = ["451 4.3.0 try again later"]
    caplog.set_level(logging.INFO, logger="postdesk.notifier")
    worker.run_pass()
    assert len(sink.got) == 1  # the second mail of the pass went through
    (deferred,) = [o for o in rows(store) if o.state == "queued"]
    assert deferred.attempts == 1 and "451" in deferred.last_error
    assert deferred.due_at == T0 + timedelta(seconds=60)
    assert any("status=deferred" in r.getMessage() and "retry_in=60s" in r.getMessage() for r in caplog.records)
    worker.run_pass()  # not due yet
    assert len(sink.got) == 1
    clock.now = clock.at(60)
    worker.run_pass()
    assert len(sink.got) == 2
    assert {o.state for o in rows(store)} == {"sent"}


def test_connection_refused_keeps_everything_queued(desk, sink):
    cfg, store, worker, clock = desk(notifier={"smtp": f"127.0.0.1:{free_port()}"})
    record(store, new(), cfg, now=T0)
    stats = worker.run_pass()
    assert stats.deferred == 2 and stats.sent == 0
    assert all(o.state == "queued" and o.due_at > T0 and "connect" in o.last_error for o in rows(store))


def test_gives_up_after_retry_max_age(desk, sink):
    cfg, store, worker, clock = desk(notifier={"retry_max_age": 3600})
    record(store, new(), cfg, now=T0)
    sink.replies = ["451 4.3.0 later"] * 2
    worker.run_pass()
    clock.now = clock.at(3601)
    sink.replies = ["451 4.3.0 later"] * 2
    worker.run_pass()
    assert [o.state for o in rows(store)] == ["failed", "failed"]
    assert sink.got == []


def test_5xx_is_failed_and_recorded_privately_on_the_ticket(desk, sink):
    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    record(store, staff_reply(1000, text="Answer\n", new_text="Answer"), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    sink.replies = ["550 5.1.1 <alice@customer.org>: Recipient address rejected"]
    stats = worker.run_pass()
    assert stats.failed == 1 and stats.sent == 1
    (failed,) = rows(store, state="failed")
    assert failed.recipient == "alice@customer.org" and failed.last_error.startswith("550 5.1.1")
    with store.session(read_only=True) as s:
        (note,) = s.scalars(select(Action).where(Action.kind == "system"))
        assert note.public is False
        assert "alice@customer.org" in note.text and "550 5.1.1" in note.text
    assert [o["state"] for o in store.list_outbox() if o["recipient"] == "alice@customer.org" and o["kind"] == "update"] == ["failed"]
    # The private note schedules nothing and is never mailed.
    clock.now = clock.at(1000)
    worker.run_pass()
    assert all("Recipient address rejected" not in g.text for g in sink.got)


# --- crash and scale safety -------------------------------------------------------


def test_row_of_a_dead_worker_is_reclaimed_after_the_lease(desk, sink):
    cfg, store, worker, clock = desk(notifier={"lease": 300})
    record(store, new(), cfg, now=T0)
    dead = outbox.claim(store, T0, 300, limit=10)  # a worker that then died
    assert len(dead) == 2
    clock.now = clock.at(299)
    assert worker.run_pass().sent == 0
    clock.now = clock.at(301)
    assert worker.run_pass().sent == 2
    assert len(sink.got) == 2
    # The dead worker coming back cannot record over the new claim.
    loaded, _acks = outbox.load(store, dead[:1], cfg, clock.now)
    assert loaded == [None]
    assert {o.state for o in rows(store)} == {"sent"}


def test_claim_is_exclusive(desk, sink):
    cfg, store, worker, clock = desk()
    record(store, new(), cfg, now=T0)
    first = outbox.claim(store, T0, 300)
    assert len(first) == 2
    assert outbox.claim(store, T0, 300) == []


def test_two_workers_send_nothing_twice(desk, sink, store_url):
    cfg, store, _, clock = desk(store_url)
    for i in range(30):
        record(store, new(author=f"c{i}@customer.org", subject=f"Ticket {i}"), cfg, now=T0)
    clock.now = clock.at(1)
    stores = [Store.from_config(cfg) for _ in range(2)]
    workers = [Worker(cfg, s, clock, batch=4) for s in stores]
    barrier = threading.Barrier(2)
    errors = []

    def go(w):
        try:
            barrier.wait()
            while w.run_pass().handled:
                pass
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert not errors
    keys = [(g.recipients[0], g.message["X-Postdesk-Ticket"], g.message["Auto-Submitted"]) for g in sink.got]
    assert len(keys) == 60 and len(set(keys)) == 60
    assert {o.state for o in rows(store)} == {"sent"}


# --- headers from hostile data ----------------------------------------------------


def test_no_header_injection_from_subject_or_name(desk, sink):
    cfg, store, worker, clock = desk()
    evil = "=?utf-8?q?Hi=0D=0ABcc:_victim@evil.test?= \r\nBcc: victim2@evil.test"
    record(store, new(subject=evil, author_name=evil, attachments=(attachment(b"x", "a\r\nBcc: x@evil.test.txt"),)), cfg, now=T0)
    record(store, staff_reply(1000, text="ok\n", new_text="ok", author_name=evil, attachments=(attachment(b"y", "b\r\nBcc: y@evil.test.txt"),)), cfg, now=clock.at(1))
    clock.now = clock.at(500)
    worker.run_pass()
    assert len(sink.got) == 3  # ack, alert, update
    for got in sink.got:
        assert len(got.recipients) == 1
        headers = BytesParser(policy=policy.compat32).parsebytes(got.data, headersonly=True)
        assert "Bcc" not in headers and headers.get_all("To") and len(headers.get_all("To")) == 1
        m = got.message
        assert m["Bcc"] is None
        assert "\r" not in str(m["Subject"]) and "\n" not in str(m["Subject"])
        assert "\n" not in str(m["To"])
        for part in m.walk():
            assert "Bcc" not in part
            assert "\n" not in (part.get_filename() or "")
    # The literal text survives, harmlessly, on one line.
    assert "victim2@evil.test" in sink.to("alice@customer.org")[0].message["Subject"]


# --- the worker process: run(), --once, AUTH, SIGTERM -------------------------------


def test_run_once_sends_what_is_due(desk, sink):
    from postdesk.notifier import run

    cfg, store, worker, clock = desk()
    record(store, new(), cfg, now=T0)
    assert run(cfg, once=True, clock=lambda: T0 + timedelta(seconds=1)) == 0
    assert len(sink.got) == 2


def test_run_once_without_a_database_is_a_temporary_failure(make_config, sink, tmp_path):
    from postdesk.notifier import run

    cfg = make_config(f"sqlite:///{tmp_path}/missing.db", notifier={"smtp": f"127.0.0.1:{sink.port}"})
    assert run(cfg, once=True) == 75


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_auth_from_password_file(desk, tmp_path):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from postdesk.notifier.smtp import Submitter

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator, auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        (tmp_path / "pw").write_text("s3cret\n")
        cfg, store, worker, clock = desk(notifier={"smtp": f"127.0.0.1:{port}", "username": "desk", "password_file": str(tmp_path / "pw")})
        record(store, new(), cfg, now=T0)
        assert worker.run_pass().sent == 2
        assert logins == [(b"desk", b"s3cret")]  # one connection, one login per pass
        assert len(handler.got) == 2
        # A wrong password holds the mail (temporary), it does not bounce it.
        (tmp_path / "pw").write_text("wrong\n")
        cfg2, store2, _, clock2 = desk(notifier={"smtp": f"127.0.0.1:{port}", "username": "desk", "password_file": str(tmp_path / "pw")})
        # (aiosmtpd stalls smtplib's fallback from PLAIN to LOGIN: keep the timeout short.)
        worker2 = Worker(cfg2, store2, clock2, submitter_factory=lambda: Submitter.from_config(cfg2, timeout=1))
        record(store2, new(), cfg2, now=T0)
        stats = worker2.run_pass()
        assert stats.deferred == 2 and stats.failed == 0
    finally:
        controller.stop()


def test_sigterm_finishes_the_mail_in_flight_then_stops(desk, sink, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from postdesk.clock import utcnow
    from postdesk.testing.toml import toml_dumps

    cfg, store, worker, clock = desk()
    for i in range(4):
        record(store, new(author=f"c{i}@customer.org", subject=f"T{i}"), cfg, now=utcnow() - timedelta(seconds=5))
    conf = tmp_path / "postdesk.toml"
    conf.write_text(toml_dumps(cfg.as_dict()))
    sink.delay = 0.5
    env = dict(os.environ, PYTHONPATH=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "postdesk", "--config", str(conf), "notifier"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert sink.in_flight.wait(15), "the notifier never started a mail"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stderr.read()
    assert rc == 0, log
    assert len(sink.got) == 1, log  # the mail in flight, and no other
    states = [o.state for o in rows(store)]
    assert states.count("sent") == 1 and states.count("queued") == 7, states
    assert all(o.lease_until is None for o in rows(store))
    assert f"{sink.got[0].queue_id}: to=<" in log and "status=sent" in log


def test_starttls_to_a_relay(desk, tmp_path, monkeypatch):
    import shutil
    import ssl
    import subprocess

    from aiosmtpd.controller import Controller

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = SinkHandler()
    sessions = []

    class TLSHandler(SinkHandler):
        async def handle_DATA(self, server, session, envelope):
            sessions.append(session.ssl is not None)
            return await handler.handle_DATA(server, session, envelope)

    port = free_port()
    controller = Controller(TLSHandler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    try:
        # The relay's certificate is trusted the ordinary way (here: the
        # default CA file points at it); the host name is verified.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        cfg, store, worker, clock = desk(notifier={"smtp": f"127.0.0.1:{port}", "starttls": True})
        record(store, new(), cfg, now=T0)
        assert worker.run_pass().sent == 2
        assert sessions == [True, True] and len(handler.got) == 2
        # Without STARTTLS the relay refuses (530 at MAIL): our configuration,
        # not the recipient's fault: temporary, the mail waits.
        cfg2, store2, worker2, _ = desk(notifier={"smtp": f"127.0.0.1:{port}"})
        record(store2, new(), cfg2, now=T0)
        stats = worker2.run_pass()
        assert stats.sent == 0 and stats.failed == 0 and stats.deferred == 2
    finally:
        controller.stop()


def test_action_toggled_public_later_is_sent_once(desk, sink):
    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    # A private note, then a public answer that goes out (the customer's
    # mark passes the note while it is still private).
    note = record(store, staff_reply(1000, text="Note: replacement part ordered.\n", new_text="Note: replacement part ordered.", public=False, flags=frozenset({"staff", "pvt"})), cfg, now=clock.at(10))
    record(store, staff_reply(1000, text="We are on it.\n", new_text="We are on it."), cfg, now=clock.at(20))
    clock.now = clock.at(200)
    worker.run_pass()
    assert all("replacement part" not in g.text for g in sink.got) and len(sink.got) == 2
    sink.got.clear()
    # Staff decide the customers may see the note after all.
    assert store.toggle_action(note.action_id, cfg, clock.now) is True
    clock.now = clock.at(200)
    worker.run_pass()
    (alice,) = sink.to("alice@customer.org")
    (carol,) = sink.to("carol@customer.org")
    for got in (alice, carol):
        assert "replacement part ordered" in got.text and "We are on it." not in got.text
    # Once only: another change later does not repeat it.
    sink.got.clear()
    record(store, staff_reply(1000, text="Part arrived.\n", new_text="Part arrived."), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    (alice,) = sink.to("alice@customer.org")
    assert "Part arrived." in alice.text and "replacement part" not in alice.text


def test_a_later_cc_does_not_get_the_history(desk, sink):
    cfg, store, worker, clock = desk()
    record(store, new(), cfg, now=T0)
    record(store, staff_reply(1000, text="First answer.\n", new_text="First answer."), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    sink.got.clear()
    # Alice copies dave in; staff answer; dave gets the new answer only.
    record(store, followup(1000, text="Adding Dave.\n", new_text="Adding Dave.", cc=("dave@customer.org",)), cfg, now=clock.at(10))
    record(store, staff_reply(1000, text="Hello Dave.\n", new_text="Hello Dave."), cfg, now=clock.at(20))
    clock.now = clock.at(300)
    worker.run_pass()
    (dave,) = sink.to("dave@customer.org")
    assert "Hello Dave." in dave.text and "First answer." not in dave.text and "Adding Dave." not in dave.text


def test_staff_html_reply_reaches_customers_as_html_with_its_inline_image(desk, sink):
    """End to end through the store and the worker: a staff reply recorded
    with its sanitised HTML and a pasted screenshot goes to the customers as
    text + HTML, the image by its cid, the quoted history cut from both."""
    from postdesk.filter.decision import Attachment

    cfg, store, worker, clock = _ticket_with_cc(desk)
    sink.got.clear()
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    shot = Attachment(filename="image001.png", content_type="image/png", data=png, content_id="image001.png@01DA", inline=True)
    html = '<p>Fixed, see <b>this</b>:</p><img src="cid:image001.png@01DA"><blockquote type="cite">It is on fire.</blockquote>'
    record(store, staff_reply(1000, text="Fixed, see this:\n> It is on fire.\n", new_text="Fixed, see this:", html=html, attachments=(shot,)), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    (alice,) = sink.to("alice@customer.org")
    m = alice.message
    assert m.get_content_type() == "multipart/alternative"
    text, related = m.get_payload()
    assert "Fixed, see this:" in text.get_content() and "image001.png (image/png" in text.get_content()
    body, image = related.get_payload()
    assert "<b>this</b>" in body.get_content() and "It is on fire" not in body.get_content()
    assert image["Content-ID"] == "<image001.png@01DA>" and image.get_content() == png
    assert m["Subject"] == "[#1000] Printer on fire" and m["In-Reply-To"]
