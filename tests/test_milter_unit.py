"""The milter driven by ``Milter.testctx.TestCtx``: no MTA, no socket.

Covers the fast path, the Subject tag (plain, encoded-word, raw 8-bit,
already tagged), the X-Postdesk headers, the size limit, deliver = discard,
staff direct replies and TEMPFAIL on a store error.  The ingest function is
injected, so a store failure is one ``raise``.

pymilter 1.0.5 traps: never ``import Milter.test`` (it turns NOREPLY into
CONTINUE globally); TestCtx's ``chgheader`` appends a second header instead
of replacing, so the new value is the *last* one; TestCtx shares its
``default_opts`` list between instances and our negotiate narrows it, so
each test starts from a fresh copy.
"""

from __future__ import annotations

import email.header
import io
import re
from dataclasses import dataclass
from datetime import UTC

import Milter
import pytest
from Milter import testctx
from milter_support import fresh_opts  # noqa: F401 (autouse)

from postdesk.milter import subject as subj
from postdesk.milter.app import PostdeskMilter, make_factory
from postdesk.milter.spool import Spool
from postdesk.outcomes import Outcome


@dataclass(frozen=True)
class FakeResult:
    outcome: Outcome
    ticket: int | None = None
    action_id: int | None = None
    decision: object = None
    reason: str = ""


class FakeIngest:
    """Stands in for postdesk.ingest.ingest; records what it was given."""

    def __init__(self, result=None, error: Exception | None = None):
        self.result = result or FakeResult(Outcome.CREATED, ticket=1042)
        self.error = error
        self.calls = []

    def __call__(self, raw, envelope, store, config, now=None, prepared=None):
        self.calls.append((raw, envelope))
        if self.error is not None:
            raise self.error
        return self.result




def drive(config, ingest, raw: bytes, sender="customer@example.org", rcpts=("support@example.com",), macros=None, ip="192.0.2.7"):
    """Feed one message through a fresh milter; returns (rc, ctx)."""
    Milter.factory = make_factory(config, store=object(), ingest=ingest)
    ctx = testctx.TestCtx()
    ctx._setsymval("i", "4BxT2k1Z3n")
    for k, v in (macros or {}).items():
        ctx._setsymval(k, v)
    assert ctx._connect(host="client.example.org", helo="client.example.org", ip=ip) == Milter.CONTINUE
    rc = ctx._feedFile(io.BytesIO(raw), sender, *rcpts)
    return rc, ctx


def message(subject: bytes | None = b"Printer on fire", extra: bytes = b"", body: bytes = b"It burns.\n") -> bytes:
    head = b"From: Customer <customer@example.org>\nTo: support@example.com\nMessage-ID: <m1@example.org>\n"
    if subject is not None:
        head += b"Subject: " + subject + b"\n"
    return head + extra + b"\n" + body


def last(ctx, name):
    values = ctx._msg.get_all(name) or []
    return str(values[-1]) if values else None


# -- the fast path --------------------------------------------------------------


def test_mail_not_for_us_is_accepted_at_data_without_reading_it(config):
    ingest = FakeIngest()
    rc, ctx = drive(config, ingest, message(), rcpts=("someone@example.net",))
    assert rc == Milter.ACCEPT
    assert ingest.calls == []
    assert ctx._priv.spool is None  # never spooled: accepted before headers
    assert not ctx._headerschanged


def test_unauthenticated_staff_address_takes_the_fast_path(config):
    ingest = FakeIngest()
    rc, _ = drive(config, ingest, message(b"Re: [#1042] fixed"), sender="alice@example.com", rcpts=("customer@example.org",))
    assert rc == Milter.ACCEPT and ingest.calls == []


# -- support mail -----------------------------------------------------------------


def test_support_mail_is_recorded_tagged_and_marked(config):
    ingest = FakeIngest(FakeResult(Outcome.CREATED, ticket=1042))
    rc, ctx = drive(config, ingest, message(), rcpts=("support@example.com", "boss@example.net"))
    assert rc == Milter.ACCEPT
    (raw, env), = ingest.calls
    assert b"Subject: Printer on fire\r\n" in raw and raw.endswith(b"It burns.\n")
    assert env.sender == "customer@example.org"
    assert env.recipients == ("support@example.com", "boss@example.net")
    assert env.queue_id == "4BxT2k1Z3n" and env.client_address == "192.0.2.7"
    assert last(ctx, "Subject") == "[#1042] Printer on fire"
    assert last(ctx, "X-Postdesk-Ticket") == "1042"
    assert last(ctx, "X-Postdesk-Outcome") == "created"


def test_followup_outcome_updated(config):
    ingest = FakeIngest(FakeResult(Outcome.UPDATED, ticket=7))
    rc, ctx = drive(config, ingest, message(b"Re: [#7] Printer on fire"))
    assert rc == Milter.ACCEPT
    assert last(ctx, "Subject") == "Re: [#7] Printer on fire"  # already tagged: untouched
    assert ctx._msg.get_all("Subject") == ["Re: [#7] Printer on fire"]
    assert last(ctx, "X-Postdesk-Outcome") == "updated"


def test_ignored_mail_gets_no_tag(config):
    ingest = FakeIngest(FakeResult(Outcome.IGNORED, reason="loop"))
    rc, ctx = drive(config, ingest, message())
    assert rc == Milter.ACCEPT
    assert ctx._msg.get_all("Subject") == ["Printer on fire"]
    assert last(ctx, "X-Postdesk-Ticket") is None
    assert last(ctx, "X-Postdesk-Outcome") == "ignored"


def test_inbound_postdesk_headers_are_not_trusted(config):
    ingest = FakeIngest(FakeResult(Outcome.CREATED, ticket=5))
    rc, ctx = drive(config, ingest, message(extra=b"X-Postdesk-Ticket: 999\n"))
    assert rc == Milter.ACCEPT
    # TestCtx deletes on chgheader(name, idx, ""), then our addheader appends.
    assert ctx._msg.get_all("X-Postdesk-Ticket") == ["5"]


def test_no_subject_gets_one(config):
    rc, ctx = drive(config, FakeIngest(FakeResult(Outcome.CREATED, ticket=3)), message(None))
    assert rc == Milter.ACCEPT and last(ctx, "Subject") == "[#3]"


def test_encoded_word_subject_is_kept_byte_for_byte(config):
    encoded = b"=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="
    rc, ctx = drive(config, FakeIngest(FakeResult(Outcome.CREATED, ticket=1042)), message(encoded))
    assert rc == Milter.ACCEPT
    new = last(ctx, "Subject")
    assert new == "[#1042] " + encoded.decode()
    assert str(email.header.make_header(email.header.decode_header(new))) == "[#1042] Grüße aus Köln"


def test_raw_utf8_subject_is_reencoded(config):
    rc, ctx = drive(config, FakeIngest(FakeResult(Outcome.CREATED, ticket=1042)), message("Grüße aus Köln".encode()))
    assert rc == Milter.ACCEPT
    new = last(ctx, "Subject")
    assert new.isascii() and new.startswith("[#1042] =?utf-8?")
    assert str(email.header.make_header(email.header.decode_header(new))) == "[#1042] Grüße aus Köln"


def test_size_hint_over_the_limit_is_refused_at_data(make_config):
    config = make_config(limits={"max_message_bytes": 2048})
    Milter.factory = make_factory(config, store=object(), ingest=FakeIngest())
    ctx = testctx.TestCtx()
    ctx._connect(ip="192.0.2.7")
    assert ctx._envfrom("<c@example.org>", "SIZE=5000") == Milter.CONTINUE
    assert ctx._envrcpt("<support@example.com>") == Milter.CONTINUE
    assert ctx._data() == Milter.REJECT
    assert ctx._reply[:2] == ("552", "5.3.4")
    # Not to a support address: not ours to refuse.
    assert ctx._envfrom("<c@example.org>", "SIZE=5000") == Milter.CONTINUE
    assert ctx._envrcpt("<other@example.net>") == Milter.CONTINUE
    assert ctx._data() == Milter.ACCEPT


def test_body_over_the_limit_is_refused_at_end_of_data_and_not_kept(make_config):
    # Body chunks are "no reply": the refusal comes at end of data, and
    # nothing past the limit is kept meanwhile.
    config = make_config(limits={"max_message_bytes": 2048})
    ingest = FakeIngest()
    Milter.factory = make_factory(config, store=object(), ingest=ingest)
    ctx = testctx.TestCtx()
    ctx._connect(ip="192.0.2.7")
    assert ctx._envfrom("<c@example.org>") == Milter.CONTINUE
    assert ctx._envrcpt("<support@example.com>") == Milter.CONTINUE
    assert ctx._data() == Milter.CONTINUE
    assert ctx._header("Subject", "big") == Milter.CONTINUE
    assert ctx._eoh() == Milter.CONTINUE
    for _ in range(10):
        assert ctx._priv.body(b"y" * 1000) == Milter.CONTINUE
    assert ctx._priv.spool.read() == b""  # dropped once over the limit
    assert ctx._priv.over_limit > 10000
    assert ctx._eom() == Milter.REJECT
    assert ctx._reply[:2] == ("552", "5.3.4")
    assert ingest.calls == []


def test_headers_over_the_limit_are_refused_at_end_of_headers(make_config):
    config = make_config(limits={"max_message_bytes": 2048})
    ingest = FakeIngest()
    rc, ctx = drive(config, ingest, message(extra=b"X-Big: " + b"h" * 3000 + b"\n"))
    assert rc == Milter.REJECT and ctx._reply[:2] == ("552", "5.3.4")
    assert ingest.calls == []


def test_a_failing_header_callback_is_answered_451_at_end_of_headers(config, monkeypatch):
    ingest = FakeIngest()
    Milter.factory = make_factory(config, store=object(), ingest=ingest)
    ctx = testctx.TestCtx()
    ctx._connect(ip="192.0.2.7")
    ctx._envfrom("<c@example.org>")
    ctx._envrcpt("<support@example.com>")
    assert ctx._data() == Milter.CONTINUE
    monkeypatch.setattr(Spool, "header", lambda *a: 1 / 0)
    assert ctx._header("Subject", "x") == Milter.CONTINUE  # no reply: nothing to refuse with
    assert ctx._eoh() == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("451", "4.3.0")
    assert ingest.calls == []


# -- never lose mail --------------------------------------------------------------


class StoreLocked(Exception):
    pass


def test_store_error_tempfails_with_451(config, caplog):
    ingest = FakeIngest(error=StoreLocked("database is locked"))
    rc, ctx = drive(config, ingest, message())
    assert rc == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("451", "4.3.0")
    assert not ctx._headerschanged
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "4BxT2k1Z3n" in tracebacks[0].getMessage()


def test_rejected_outcome_answers_from_the_table(config):
    rc, ctx = drive(config, FakeIngest(FakeResult(Outcome.REJECTED, reason="unreadable 100% garbage")), message())
    assert rc == Milter.REJECT
    assert ctx._reply[:2] == ("554", "5.6.0")
    assert "%" not in ctx._reply[2]


# -- where the support copy goes --------------------------------------------------


def test_discard_drops_a_copy_only_for_support(make_config):
    config = make_config(milter={"deliver": "discard"})
    rc, ctx = drive(config, FakeIngest(), message())
    assert rc == Milter.DISCARD


def test_discard_removes_support_recipients_and_keeps_others(make_config):
    config = make_config(milter={"deliver": "discard"})
    rc, ctx = drive(config, FakeIngest(), message(), rcpts=("support@example.com", "help@example.com", "boss@example.net"))
    assert rc == Milter.ACCEPT
    assert ctx._delrcpt == ["<support@example.com>", "<help@example.com>"]
    assert last(ctx, "Subject") == "[#1042] Printer on fire"


def test_discard_keeps_ignored_mail(make_config):
    config = make_config(milter={"deliver": "discard"})
    rc, ctx = drive(config, FakeIngest(FakeResult(Outcome.IGNORED)), message())
    assert rc == Milter.ACCEPT and ctx._delrcpt == []


def test_negotiates_only_the_actions_it_uses(make_config):
    for deliver, wanted in (("pass", Milter.ADDHDRS | Milter.CHGHDRS), ("discard", Milter.ADDHDRS | Milter.CHGHDRS | Milter.DELRCPT)):
        Milter.factory = make_factory(make_config(milter={"deliver": deliver}), store=object(), ingest=FakeIngest())
        ctx = testctx.TestCtx()
        ctx._opts = opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
        ctx._stage = -1
        assert Milter.negotiate_callback(ctx, opts) == Milter.CONTINUE
        assert opts[0] == wanted


# -- staff replying straight to a customer ----------------------------------------


def test_authenticated_staff_direct_reply_is_recorded_untouched(config):
    ingest = FakeIngest(FakeResult(Outcome.UPDATED, ticket=1042))
    rc, ctx = drive(
        config, ingest, message(b"Re: [#1042] Printer on fire"), sender="alice@example.com",
        rcpts=("customer@example.org",), macros={"{auth_authen}": "alice@example.com"},
    )
    assert rc == Milter.ACCEPT
    (raw, env), = ingest.calls
    assert env.sasl_username == "alice@example.com" and env.recipients == ("customer@example.org",)
    assert not ctx._headerschanged  # mail to the customer leaves as written


def test_authenticated_staff_without_tag_is_accepted_after_headers(config):
    ingest = FakeIngest()
    rc, ctx = drive(config, ingest, message(b"Lunch?"), sender="alice@example.com", rcpts=("bob@example.net",), macros={"{auth_authen}": "alice@example.com"})
    assert rc == Milter.ACCEPT and ingest.calls == []


# -- one connection, several messages ---------------------------------------------


def test_state_is_reset_between_messages(config):
    ingest = FakeIngest()
    rc, ctx = drive(config, ingest, message())
    assert rc == Milter.ACCEPT
    rc = ctx._feedFile(io.BytesIO(message(b"second")), "x@example.org", "nobody@example.net")
    assert rc == Milter.ACCEPT and len(ingest.calls) == 1


# -- the pieces ---------------------------------------------------------------------


def test_subject_tagging_rules():
    assert subj.tagged(b"Hello", 5) == "[#5] Hello"
    assert subj.tagged(b"Re: [#5] Hello", 5) is None
    assert subj.tagged(b"RE: [#5] Hello", 5, "#") is None
    assert subj.tagged(b"Re: [#4] Hello", 5) == "[#5] Re: [#4] Hello"
    assert subj.tagged(b"[T77] x", 77, "T") is None
    folded = subj.tagged(b"first part\n second part", 5)
    assert folded == "[#5] first part\n second part" and "\r" not in folded
    assert "\r" not in subj.tagged(b"a\r\n b", 5)
    latin1 = subj.tagged("Café crème".encode("latin-1"), 9)
    assert str(email.header.make_header(email.header.decode_header(latin1))) == "[#9] Café crème"


def test_subject_tag_value_is_short_and_folded():
    long = ("ü" * 3000).encode()
    value = subj.tagged(long, 12345)
    assert len(value) <= 2047 and value.startswith("[#12345] ")
    assert "\r" not in value
    for line in value.split("\n")[1:]:
        assert line.startswith(" ")
    assert subj.tagged(b"x" * 3000, 1).startswith("[#1] ") and len(subj.tagged(b"x" * 3000, 1)) <= 2047


def test_spool_rolls_over_to_disk():
    s = Spool(memory=1000)
    s.header("Subject", b"x")
    assert not s.on_disk
    s.body(b"y" * 5000)
    assert s.on_disk
    raw = s.read()
    assert raw.startswith(b"Subject: x\r\n\r\n") and raw.endswith(b"y" * 5000) and s.size == len(raw)
    s.close()


def test_only_data_eoh_and_eom_are_replied_to():
    # connect/HELO/MAIL/RCPT, each header and each body chunk never refuse:
    # Postfix need not wait for them.  DATA, end of headers and end of data
    # answer 552/451 (and ACCEPT for mail that is not ours), so they reply.
    for name in ("connect", "hello", "envfrom", "envrcpt", "header", "body"):
        assert getattr(PostdeskMilter, name).milter_protocol
    for name in ("eoh", "data"):
        assert not getattr(getattr(PostdeskMilter, name), "milter_protocol", 0)
    Milter.factory = make_factory(defaults_config(), store=object(), ingest=FakeIngest())
    ctx = testctx.TestCtx()
    ctx._opts = opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]
    ctx._stage = -1
    assert Milter.negotiate_callback(ctx, opts) == Milter.CONTINUE
    wanted = Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_HDR | Milter.P_NR_BODY
    assert opts[1] & wanted == wanted
    assert not opts[1] & (Milter.P_NR_DATA | Milter.P_NR_EOH)
    # HELO is read (SPF's identity for the null sender), unknown commands are not.
    assert not opts[1] & Milter.P_NOHELO and opts[1] & Milter.P_NOUNKNOWN


def test_a_failing_no_reply_callback_tempfails_at_data(config, monkeypatch):
    Milter.factory = make_factory(config, store=object(), ingest=FakeIngest())
    ctx = testctx.TestCtx()
    ctx._connect(ip="192.0.2.7")
    assert ctx._envfrom("<c@example.org>") == Milter.CONTINUE
    monkeypatch.setattr(config.__class__, "is_system_address", lambda self, a: 1 / 0)
    assert ctx._envrcpt("<support@example.com>") == Milter.CONTINUE
    assert ctx._data() == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("451", "4.3.0")


def defaults_config():
    from postdesk.config import defaults

    return defaults()


def test_the_store_runs_on_a_writer_thread_and_dns_on_the_session(config, monkeypatch, caplog):
    # server.run passes a GroupCommit: the store must never run on
    # libmilter's threads (see postdesk.milter.app.make_factory); the DNS of
    # authentication waits on the session's own thread, never on a writer.
    import threading

    import postdesk.ingest
    from postdesk.auth.result import UNCHECKED
    from postdesk.store.groupcommit import GroupCommit

    checked, stored = [], []

    def authenticate(parsed, raw, envelope, config):
        checked.append(threading.current_thread().name)
        return UNCHECKED

    monkeypatch.setattr(postdesk.ingest, "authenticate", authenticate)

    class Store:
        def record_batch(self, items, done=None):
            from postdesk.outcomes import Result

            stored.append(threading.current_thread().name)
            return [Result(Outcome.CREATED, ticket=8) for _ in items]

    writer = GroupCommit(Store())
    try:
        Milter.factory = make_factory(config, store=writer)
        ctx = testctx.TestCtx()
        ctx._setsymval("i", "Q1")
        ctx._connect(ip="192.0.2.7")
        with caplog.at_level("DEBUG", logger="postdesk"):
            assert ctx._feedFile(io.BytesIO(message()), "c@example.org", "support@example.com") == Milter.ACCEPT
    finally:
        writer.stop()
    assert stored == ["postdesk-writer-0"]
    # The DEBUG line gives the writer's stages of this message (docs/postfix.md).
    assert re.search(r"Q1: timing ms data-eom=\S+ prepare=\S+ queue=\S+ batch=1 before=0.0 record=\S+ commit=\S+ hand-back=", caplog.text)
    assert checked and checked[0] != "postdesk-writer-0"
    assert last(ctx, "Subject") == "[#8] Printer on fire"


def test_oversize_staff_mail_is_let_through_unrecorded(make_config):
    config = make_config(limits={"max_message_bytes": 2048})
    ingest = FakeIngest()
    rc, ctx = drive(config, ingest, message(b"Re: [#5] big", body=b"z" * 5000 + b"\n"), sender="alice@example.com",
                    rcpts=("customer@example.org",), macros={"{auth_authen}": "alice@example.com"})
    assert rc == Milter.ACCEPT and ingest.calls == [] and ctx._reply is None


# -- with the real filter and store (SQLite) --------------------------------------


@pytest.fixture
def real_config(make_config, store_url):
    return make_config(store_url=store_url)


@pytest.fixture
def real_store(real_config):
    from postdesk.store import Store

    config = real_config
    store = Store.from_config(config)
    store.init(config.organization.first_ticket_number)
    yield store
    store.close()


def test_real_ingest_new_ticket_then_staff_direct_reply(real_config, real_store):
    config = real_config
    from postdesk.ingest import ingest

    def feed(raw, sender, rcpts, macros=None):
        Milter.factory = make_factory(config, store=real_store, ingest=ingest)
        ctx = testctx.TestCtx()
        ctx._setsymval("i", "Q" + uuid_hex())
        for k, v in (macros or {}).items():
            ctx._setsymval(k, v)
        ctx._connect(ip="198.51.100.9")
        return ctx._feedFile(io.BytesIO(raw), sender, *rcpts), ctx

    rc, ctx = feed(message(b"=?UTF-8?Q?Drucker_br=C3=A4nnt?="), "customer@example.org", ("support@example.com",))
    assert rc == Milter.ACCEPT
    assert last(ctx, "Subject") == "[#1000] =?UTF-8?Q?Drucker_br=C3=A4nnt?="
    assert last(ctx, "X-Postdesk-Outcome") == "created"

    reply = (b"From: Alice <alice@example.com>\nTo: customer@example.org\nMessage-ID: <r1@example.com>\n"
             b"Subject: Re: [#1000] Drucker brennt\n\nWe are on it.\n")
    rc, ctx = feed(reply, "alice@example.com", ("customer@example.org",), {"{auth_authen}": "alice@example.com"})
    assert rc == Milter.ACCEPT
    assert not ctx._headerschanged  # the customer's copy leaves as written
    ticket = real_store.show_ticket(1000)
    assert len(ticket["actions"]) == 2
    assert "on it" in ticket["actions"][1]["text"]

    # The same reply without a SASL login is not ours: fast path, nothing recorded.
    rc, ctx = feed(reply.replace(b"r1@", b"r2@"), "alice@example.com", ("customer@example.org",))
    assert rc == Milter.ACCEPT
    assert len(real_store.show_ticket(1000)["actions"]) == 2


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex[:10].upper()


def test_deferred_outcome_answers_451_4_7_1_with_the_reason(config):
    reason = "too many new tickets from customer@example.org, try again later"
    rc, ctx = drive(config, FakeIngest(FakeResult(Outcome.DEFERRED, reason=reason)), message())
    assert rc == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("451", "4.7.1")
    assert "too many new tickets" in ctx._reply[2]
    assert not ctx._headerschanged


def test_real_ingest_new_ticket_rate_per_sender(make_config, store_url):
    """[limits] new_tickets_per_sender: the third new ticket within the window
    is answered 451 4.7.1 and recorded nowhere; a follow-up still goes in,
    and another sender is not affected."""
    from postdesk.ingest import ingest
    from postdesk.store import Store

    config = make_config(store_url=store_url, limits={"new_tickets_per_sender": 2, "new_ticket_window": 3600})
    store = Store.from_config(config)
    store.init(config.organization.first_ticket_number)
    try:

        def feed(raw, sender="customer@example.org"):
            Milter.factory = make_factory(config, store=store, ingest=ingest)
            ctx = testctx.TestCtx()
            ctx._setsymval("i", "Q" + uuid_hex())
            ctx._connect(ip="198.51.100.9")
            return ctx._feedFile(io.BytesIO(raw), sender, "support@example.com"), ctx

        def mail(n: int, subject: bytes = b"Printer", frm: bytes = b"customer@example.org") -> bytes:
            return (b"From: " + frm + b"\nTo: support@example.com\nMessage-ID: <rate%d@example.org>\nSubject: " % n + subject + b"\n\nHelp.\n")

        assert feed(mail(1))[0] == Milter.ACCEPT
        assert feed(mail(2))[0] == Milter.ACCEPT
        rc, ctx = feed(mail(3))
        assert rc == Milter.TEMPFAIL and ctx._reply[:2] == ("451", "4.7.1")
        assert "customer@example.org" in ctx._reply[2]
        assert [t["number"] for t in store.list_tickets()] == [1000, 1001]
        # a reply on an existing ticket is no new ticket
        assert feed(mail(4, b"Re: [#1000] Printer"))[0] == Milter.ACCEPT
        assert len(store.show_ticket(1000)["actions"]) == 2
        # someone else still opens tickets
        assert feed(mail(5, frm=b"other@example.org"), "other@example.org")[0] == Milter.ACCEPT
        # the deferred message, retried by its MTA after the window, goes in
        later = make_config(store_url=store_url, limits={"new_tickets_per_sender": 2, "new_ticket_window": 1})
        from datetime import datetime, timedelta

        result = ingest(mail(3), _envelope(), store, later, now=datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=5))
        assert result.outcome is Outcome.CREATED
    finally:
        store.close()


def _envelope():
    from postdesk.filter.decision import Envelope

    return Envelope("customer@example.org", ("support@example.com",), queue_id="QRETRY", client_address="198.51.100.9")


def test_one_writer_on_sqlite_several_on_postgresql():
    """SQLite has one writer: a second writer thread would only queue (docs/postfix.md)."""
    from postdesk.store import groupcommit

    assert groupcommit.writers_for("sqlite:////var/lib/postdesk/postdesk.db") == 1
    assert groupcommit.writers_for("postgresql+psycopg://h/db") == groupcommit.WRITERS > 1


def test_a_subject_in_a_pseudo_charset_is_not_decoded_with_it():
    # punycode's decoder is quadratic, unicode_escape reads backslashes: neither is a character set.
    for charset in ("punycode", "unicode_escape", "base64"):
        raw = f"=?{charset}?Q?abc-{'x' * 50}?=".encode()
        assert subj.decode(raw) == raw.decode()
    assert subj.decode(b"=?utf-8?Q?Gr=C3=BC=C3=9Fe?=") == "Grüße"
