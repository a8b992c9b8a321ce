"""decide(): one Decision per rule of docs/filter.md, against an in-memory Known."""

from __future__ import annotations

import base64
from datetime import datetime

import pytest
from filter_support import MemoryKnown, ticket_info

from postdesk.filter import decide, parse
from postdesk.filter.decision import Decision, Envelope, Kind
from postdesk.msgid import make_message_id

SECRET = b"pipeline-secret-0123456789abcdef"
NOW = datetime(2026, 1, 1, 12, 0, 0)
CUSTOMER = "c@cust.org"
OUTSIDE_IP = "203.0.113.9"


def fake_known(tickets=None, ids=None, seen=(), sent=None) -> MemoryKnown:
    """By default ticket 1042, opened by CUSTOMER with a colleague on it."""
    tickets = tickets or {1042: (CUSTOMER, {CUSTOMER, "colleague@cust.org"})}
    infos = [ticket_info(n, requester, participants) for n, (requester, participants) in tickets.items()]
    return MemoryKnown(infos, ids, seen, SECRET, sent)


def mail(subject="Printer broken", frm=CUSTOMER, to="support@example.com", body="It smokes.", extra="", msgid="m1@cust.org") -> bytes:
    head = f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    if msgid:
        head += f"Message-ID: <{msgid}>\r\n"
    head += extra.replace("\n", "\r\n")
    if not head.endswith("\r\n"):
        head += "\r\n"
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


def env(sender=CUSTOMER, recipients=("support@example.com",), client=OUTSIDE_IP, sasl=""):
    return Envelope(sender=sender, recipients=tuple(recipients), queue_id="Q1", client_address=client, sasl_username=sasl)


def run(raw, envelope=None, known=None, config=None) -> Decision:
    return decide(parse(raw), envelope or env(), known if known is not None else fake_known(), config, NOW)


# --- NEW and the fields of a Decision ---------------------------------------


def test_new_ticket(config):
    d = run(mail(subject="Re: AW: Printer =?utf-8?q?kaputt_=C3=BC?=", to="support@example.com, Other <Other@Cust.org>", body="It smokes.\n\n-- \nJane"), config=config)
    assert d.kind is Kind.NEW and d.ticket is None
    assert d.message_key == "m1@cust.org" and d.message_id == "m1@cust.org"
    assert d.author == CUSTOMER
    assert d.subject == "Printer kaputt ü"
    assert d.original_subject == "Re: AW: Printer kaputt ü"
    assert d.text == "It smokes.\n\n-- \nJane" and d.new_text == "It smokes."
    assert d.public and d.send_ack and d.notify_team and not d.close and not d.staff
    assert d.cc == ("other@cust.org",)  # ours removed, lower-cased
    assert d.flags == frozenset()


def test_message_without_id_keyed_by_hash(config):
    raw = mail(msgid="")
    d = run(raw, config=config)
    assert d.message_id == "" and d.message_key == "sha256:" + parse(raw).sha256


def test_header_injection_in_subject_and_name(config):
    raw = mail(subject="=?utf-8?q?Hi=0D=0ABcc:_victim@evil.example?=", frm="=?utf-8?q?Eve=0D=0ABcc:_x@evil.example?= <eve@cust.org>")
    d = run(raw, env(sender="eve@cust.org"), config=config)
    for value in (d.subject, d.original_subject, d.author_name, d.author):
        assert "\r" not in value and "\n" not in value
    assert d.author == "eve@cust.org"
    assert d.original_subject == "Hi Bcc: victim@evil.example"


def test_8bit_headers(config):
    raw = "From: Jörg <j@cust.org>\r\nTo: support@example.com\r\nSubject: Grüße\r\n\r\nHallo".encode("latin-1")
    d = run(raw, env(sender="j@cust.org"), config=config)
    assert (d.kind, d.subject, d.author_name) == (Kind.NEW, "Grüße", "Jörg")


def test_unknown_charset_and_multipart_without_boundary(config):
    raw = mail(extra="Content-Type: multipart/mixed\nX: y", body="just text")
    d = run(raw, config=config)
    assert d.kind is Kind.NEW and "just text" in d.text
    raw = mail(extra="Content-Type: text/plain; charset=x-nonsense", body="Café")
    assert run(raw, config=config).text == "Café"


# --- rule 1: loops ------------------------------------------------------------


def test_rule1_loop_marker(config):
    d = run(mail(extra="X-Postdesk-Loop: support@example.com"), config=config)
    assert d.kind is Kind.IGNORE and "loop" in d.flags


def test_rule1_from_our_own_address(config):
    d = run(mail(frm="Support <support@example.com>"), env(sender="bounce-handler@cust.org"), config=config)
    assert d.kind is Kind.IGNORE and "loop" in d.flags
    d = run(mail(), env(sender="help@example.com"), config=config)
    assert d.kind is Kind.IGNORE and "loop" in d.flags


# --- rule 2: no system address ------------------------------------------------


def test_rule2_no_system_address_ignored(config):
    d = run(mail(to="someone@else.org"), env(recipients=("someone@else.org",)), config=config)
    assert d.kind is Kind.IGNORE and d.reason == "no system address"


def test_rule2_direct_staff_followup(config):
    raw = mail(subject="Re: [#1042] Printer", frm="Alice <alice@example.com>", to="c@cust.org", extra="Cc: boss@cust.org")
    d = run(raw, env(sender="alice@example.com", recipients=("C@cust.org", "boss@cust.org"), sasl="alice@example.com"), config=config)
    assert d.kind is Kind.FOLLOWUP and d.ticket == 1042
    assert {"direct", "staff"} <= d.flags
    assert d.cc == ("c@cust.org", "boss@cust.org")
    assert d.public and d.staff and not d.notify_team


def test_rule2_direct_needs_sasl_and_known_tag(config):
    raw = mail(subject="Re: [#1042] Printer", frm="alice@example.com", to="c@cust.org")
    # trusted network but no SASL login
    d = run(raw, env(sender="alice@example.com", recipients=("c@cust.org",), client="127.0.0.1"), config=config)
    assert d.kind is Kind.IGNORE
    # SASL but unknown ticket
    raw = mail(subject="Re: [#777] Printer", frm="alice@example.com", to="c@cust.org")
    d = run(raw, env(sender="alice@example.com", recipients=("c@cust.org",), sasl="alice@example.com"), config=config)
    assert d.kind is Kind.IGNORE


# --- rule 3: duplicates -------------------------------------------------------


def test_rule3_duplicate(config):
    k = fake_known(seen={"m1@cust.org"}, ids={"m1@cust.org": 1042})
    d = run(mail(), known=k, config=config)
    assert d.kind is Kind.DUPLICATE and d.ticket == 1042


def test_rule3_duplicate_by_hash(config):
    raw = mail(msgid="")
    k = fake_known(seen={"sha256:" + parse(raw).sha256})
    assert run(raw, known=k, config=config).kind is Kind.DUPLICATE


# --- rule 4: the ticket -------------------------------------------------------


@pytest.mark.parametrize("subject", ["[#1042] x", "Re: [#1042] x", "RE: AW: WG: SV: VS: Antw: TR: RIF: Fwd: FW: [#1042] x", "x [#1042]", "re: [#1042] X"])
def test_rule4_tag(config, subject):
    d = run(mail(subject=subject), config=config)
    assert d.kind is Kind.FOLLOWUP and d.ticket == 1042
    assert d.subject == "x" or d.subject == "X"


def test_rule4_other_tag_prefix(make_config):
    cfg = make_config(organization={"tag": "TKT-"})
    assert run(mail(subject="Re: [tkt-1042] x"), config=cfg).ticket == 1042
    assert run(mail(subject="Re: [#1042] x"), config=cfg).kind is Kind.NEW


def test_rule4_unknown_tag_is_new(config):
    d = run(mail(subject="Re: [#9999] x"), config=config)
    assert d.kind is Kind.NEW and "unknown-tag" in d.flags


def test_rule4_references_known_to_store(config):
    k = fake_known(ids={"orig@cust.org": 1042})
    d = run(mail(subject="Re: x", extra="In-Reply-To: <orig@cust.org>\nReferences: <a@b> <orig@cust.org>"), known=k, config=config)
    assert d.kind is Kind.FOLLOWUP and d.ticket == 1042
    assert d.references == ("orig@cust.org", "a@b")


def test_rule4_in_reply_to_then_references_newest_first(config):
    """Ids go to the store in order of preference: In-Reply-To, then References newest first."""
    k = fake_known(
        tickets={1042: (CUSTOMER, {CUSTOMER}), 1043: (CUSTOMER, {CUSTOMER}), 1044: (CUSTOMER, {CUSTOMER})},
        ids={"old@cust.org": 1043, "newer@cust.org": 1044, "answered@cust.org": 1042},
    )
    extra = "In-Reply-To: <answered@cust.org>\nReferences: <old@cust.org> <newer@cust.org> <answered@cust.org>"
    d = run(mail(subject="Re: x", extra=extra), known=k, config=config)
    assert d.references == ("answered@cust.org", "newer@cust.org", "old@cust.org")
    assert d.ticket == 1042
    d = run(mail(subject="Re: x", extra="References: <old@cust.org> <newer@cust.org>"), known=k, config=config)
    assert d.references == ("newer@cust.org", "old@cust.org") and d.ticket == 1044


def test_rule4_hmac_message_id(config):
    mid = make_message_id(1042, SECRET, "example.com")
    d = run(mail(subject="Re: x", extra=f"In-Reply-To: <{mid}>"), config=config)
    assert d.kind is Kind.FOLLOWUP and d.ticket == 1042


# --- rule 5: bounces ----------------------------------------------------------


def test_rule5_bounce_without_ticket_ignored(config):
    d = run(mail(frm="MAILER-DAEMON@mx.cust.org", subject="Undelivered Mail"), env(sender=""), config=config)
    assert d.kind is Kind.IGNORE and "bounce" in d.flags


def test_rule5_bounce_with_ticket_is_private_followup(config):
    d = run(mail(frm="MAILER-DAEMON@mx.cust.org", subject="Undelivered: [#1042] x"), env(sender=""), config=config)
    assert d.kind is Kind.FOLLOWUP and d.ticket == 1042
    assert "bounce" in d.flags
    assert (d.public, d.send_ack, d.notify_team) == (False, False, False)


def test_rule5_dsn_of_our_own_mail_finds_ticket(config):
    ours = make_message_id(1042, SECRET, "example.com")
    raw = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.cust.org>\r\nTo: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn1@mx.cust.org>\r\nAuto-Submitted: auto-replied\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
        "--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.cust.org\r\n\r\nFinal-Recipient: rfc822; gone@cust.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.com\r\nSubject: We got your request\r\nMessage-ID: <{ours}>\r\n\r\n"
        "--r--\r\n"
    ).encode()
    d = run(raw, env(sender=""), config=config)
    assert d.kind is Kind.FOLLOWUP and d.ticket == 1042
    assert {"bounce", "auto"} <= d.flags and "stranger" not in d.flags
    assert (d.public, d.send_ack, d.notify_team) == (False, False, False)


# --- rule 6: auto / list / bulk -----------------------------------------------


def test_rule6_auto_reply_new(config):
    d = run(mail(extra="Auto-Submitted: auto-replied"), config=config)
    assert d.kind is Kind.NEW and "auto" in d.flags and not d.send_ack


def test_rule6_auto_reply_followup_is_private_and_silent(config):
    d = run(mail(subject="Re: [#1042] x", extra="Auto-Submitted: auto-replied"), config=config)
    assert d.kind is Kind.FOLLOWUP and d.flags == {"auto"}
    assert (d.public, d.send_ack, d.notify_team) == (False, False, False)


@pytest.mark.parametrize(
    "extra, flag",
    [
        ("List-Id: <users.lists.cust.org>", "list"),
        ("List-Unsubscribe: <mailto:x@y>", "list"),
        ("List-Post: <mailto:users@lists.cust.org>", "list"),
        ("Precedence: list", "list"),
        ("Precedence: bulk", "bulk"),
        ("X-Auto-Response-Suppress: All", "bulk"),
    ],
)
def test_rule6_list_and_bulk_followup_is_a_normal_reply(config, extra, flag):
    """"Don't auto-answer me" headers hide nothing: a person's reply stays public and alerts the team."""
    d = run(mail(subject="Re: [#1042] x", extra=extra), config=config)
    assert d.kind is Kind.FOLLOWUP and d.flags == {flag}
    assert (d.public, d.send_ack, d.notify_team) == (True, False, True)


@pytest.mark.parametrize(
    "extra, flag",
    [
        ("Precedence: bulk", "bulk"),
        ("Precedence: junk", "auto"),
        ("Precedence: auto_reply", "auto"),
        ("Precedence: list", "list"),
        ("X-Auto-Response-Suppress: All", "bulk"),
        ("X-Autoreply: yes", "auto"),
        ("X-Autorespond: yes", "auto"),
        ("List-Unsubscribe: <mailto:x@y>", "list"),
    ],
)
def test_rule6_markers(config, extra, flag):
    d = run(mail(extra=extra), config=config)
    assert d.kind is Kind.NEW and d.flags == {flag} and not d.send_ack and d.notify_team


def test_rule6_auto_submitted_no_is_human(config):
    d = run(mail(extra="Auto-Submitted: no"), config=config)
    assert d.send_ack and "auto" not in d.flags


# --- rules 7 and 8: trust and commands -----------------------------------------


def test_rule7_staff_by_sasl_with_commands(config):
    raw = mail(subject="Re: [#1042] x [pvt]", frm="alice@example.com", body="Done.\n[closed]")
    d = run(raw, env(sender="alice@example.com", sasl="alice@example.com"), config=config)
    assert d.kind is Kind.FOLLOWUP and d.staff
    assert {"staff", "pvt", "closed"} <= d.flags
    assert not d.public and d.close and not d.notify_team


def test_rule8_bottom_posted_command_counts_quoted_one_does_not(config):
    quote = "On Mon, 1 Jan 2026 at 10:00, Support <support@example.com> wrote:\n> Closing this? [closed]\n> old text\n"
    body = quote + "\nInternal: customer is on the old firmware. [pvt]\n\n-- \nAlice\n"
    raw = mail(subject="Re: [#1042] x", frm="alice@example.com", body=body)
    d = run(raw, env(sender="alice@example.com", sasl="alice@example.com"), config=config)
    assert d.new_text == "Internal: customer is on the old firmware. [pvt]"
    assert "pvt" in d.flags and not d.public
    assert "closed" not in d.flags and not d.close


def test_rule7_staff_by_trusted_network(config):
    d = run(mail(subject="Re: [#1042] x", frm="alice@example.com", body="[CLOSED]"), env(sender="alice@example.com", client="127.0.0.1"), config=config)
    assert d.staff and d.close and d.public


def test_rule7_untrusted_staff_address(config):
    raw = mail(subject="Re: [#1042] x [closed]", frm="alice@example.com", body="[closed]")
    d = run(raw, env(sender="alice@example.com", sasl="mallory"), config=config)
    assert not d.staff and "untrusted" in d.flags
    assert not d.public and not d.close and "closed" not in d.flags


def test_rule8_customer_commands_ignored(config):
    d = run(mail(subject="Re: [#1042] x [pvt]", body="[closed]"), config=config)
    assert d.public and not d.close and not ({"pvt", "closed"} & d.flags)


def test_rule8_quoted_command_does_not_count(config):
    raw = mail(subject="Re: [#1042] x", frm="alice@example.com", body="Thanks.\n\nOn Mon, Bob <b@x> wrote:\n> [closed]")
    d = run(raw, env(sender="alice@example.com", sasl="alice@example.com"), config=config)
    assert not d.close


# --- rule 9: strangers --------------------------------------------------------


def test_rule9_stranger(config):
    d = run(mail(subject="Re: [#1042] x", frm="random@else.org"), env(sender="random@else.org"), config=config)
    assert d.kind is Kind.FOLLOWUP and "stranger" in d.flags and not d.public


def test_rule9_participant_is_not_stranger(config):
    d = run(mail(subject="Re: [#1042] x", frm="Colleague@Cust.org"), env(sender="colleague@cust.org"), config=config)
    assert "stranger" not in d.flags and d.public


def test_rule9_reference_to_our_message_id_sent_to_the_author_is_not_stranger(config):
    mid = make_message_id(1042, SECRET, "example.com")
    known = fake_known(sent={mid: ("new@else.org", 1042)})
    d = run(mail(subject="Re: [#1042] x", frm="new@else.org", extra=f"References: <{mid}>"), env(sender="new@else.org"), known, config=config)
    assert "stranger" not in d.flags and d.public


def test_rule9_our_message_id_sent_to_someone_else_is_still_a_stranger(config):
    """A forwarded acknowledgement or update carries our Message-ID; it
    authorises only the address we sent it to."""
    mid = make_message_id(1042, SECRET, "example.com")
    known = fake_known(sent={mid: (CUSTOMER, 1042)})
    d = run(mail(subject="Re: [#1042] x", frm="new@else.org", extra=f"References: <{mid}>"), env(sender="new@else.org"), known, config=config)
    assert "stranger" in d.flags and not d.public
    # an HMAC id we have no outbox row for authorises nobody either
    d = run(mail(subject="Re: x", frm="new@else.org", extra=f"In-Reply-To: <{mid}>"), env(sender="new@else.org"), config=config)
    assert d.ticket == 1042 and "stranger" in d.flags


# --- rule 10: notify_team -----------------------------------------------------


def test_rule10_notify_team(config):
    assert run(mail(), config=config).notify_team  # NEW
    assert run(mail(subject="Re: [#1042] x"), config=config).notify_team  # customer follow-up
    staff = run(mail(subject="Re: [#1042] x", frm="alice@example.com"), env(sender="alice@example.com", sasl="alice@example.com"), config=config)
    assert not staff.notify_team


# --- attachments through decide ---------------------------------------------


def test_attachments_and_truncation(make_config):
    cfg = make_config(limits={"max_attachments": 1})
    body = (
        "--b\nContent-Type: text/plain\n\nsee files\n"
        "--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\nContent-Transfer-Encoding: base64\n\n"
        + base64.b64encode(b"%PDF-a").decode()
        + "\n--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=b.pdf\n\n%PDF-b\n--b--\n"
    )
    d = run(mail(extra="MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b", body=body), config=cfg)
    assert d.text == "see files"
    assert [(a.filename, a.data) for a in d.attachments] == [("a.pdf", b"%PDF-a")]
    assert "truncated" in d.flags


# --- robustness and speed ----------------------------------------------------


def test_decide_is_pure_and_repeatable(config):
    raw = mail(subject="Re: [#1042] x")
    assert run(raw, config=config) == run(raw, config=config)


def test_garbage_does_not_raise(config):
    for raw in (b"", b"\xff\xfe\x00", b"From: (((((\r\n\r\n", b"Content-Type: multipart/mixed\r\n\r\n--"):
        d = run(raw, config=config)
        assert d.kind in (Kind.NEW, Kind.IGNORE)


def test_hostile_mail_is_decided(config):
    """Each gets a Decision (speed and the 2 KB rate: bench/filter.py)."""
    raws = [
        mail(subject="Re: " + "x" * 100_000),
        mail(extra="References: " + " ".join(f"<{i}@x>" for i in range(10_000))),
        mail(to=", ".join(f"u{i}@cust.org" for i in range(5_000)) + ", support@example.com"),
        mail(body="y" * 1_000_000),
        mail(body="> " + "z" * 1_000_000),
        mail(frm="(" * 20_000 + " <c@cust.org>"),
    ]
    for raw in raws:
        d = run(raw, config=config)
        assert d.kind in (Kind.NEW, Kind.FOLLOWUP) and d.author == CUSTOMER


def test_missing_closing_boundary_flags_truncated(config):
    body = "--b\nContent-Type: text/plain\n\nhello\n--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n\n%PDF-1.4 cut off"
    d = run(mail(extra="Content-Type: multipart/mixed; boundary=b", body=body), config=config)
    assert "truncated" in d.flags and d.text == "hello"
    assert [a.filename for a in d.attachments] == ["a.pdf"]


def test_bounce_with_tag_is_not_a_stranger(config):
    d = run(mail(frm="feedback@fbl.example", subject="FW: [#1042] x", extra="Content-Type: multipart/report; report-type=feedback-report; boundary=r", body="--r\nContent-Type: text/plain\n\nabuse\n--r--\n"), env(sender="fbl@fbl.example"), config=config)
    assert d.kind is Kind.FOLLOWUP and d.flags == {"bounce"}


# -- read_ahead: the message's own reading, done before the store's transaction --


def test_after_read_ahead_decide_reads_nothing_from_the_message_again(config, monkeypatch):
    """What read_ahead computed is what the rules use: inside the store's
    transaction they only look it up (the body, HTML, attachments, headers
    and language are not worked out a second time)."""
    from postdesk.filter import body, draft, htmlbody, language
    from postdesk.filter.pipeline import read_ahead

    parsed = parse(mail(body="Hello, the printer is broken and the toner is empty. Please help, thanks."))
    read_ahead(parsed, env(), config)
    expected = decide(parse(mail(body="Hello, the printer is broken and the toner is empty. Please help, thanks.")), env(), fake_known(), config, NOW)

    def again(*_a, **_k):
        raise AssertionError("read a second time inside decide()")

    for module, name in ((body, "extract"), (htmlbody, "extract"), (language, "detect"), (draft, "read_headers")):
        monkeypatch.setattr(module, name, again)
    d = decide(parsed, env(), fake_known(), config, NOW)
    assert d.kind is Kind.NEW and d.new_text == expected.new_text and d.language == expected.language == "en"


def test_a_failing_read_ahead_leaves_the_reading_to_the_rules(config, monkeypatch, caplog):
    from postdesk.filter import body
    from postdesk.filter.pipeline import read_ahead

    parsed = parse(mail())
    real = body.extract
    monkeypatch.setattr(body, "extract", lambda *_a: 1 / 0)
    with caplog.at_level("DEBUG", logger="postdesk"):
        read_ahead(parsed, env(), config)  # no exception: decide() will meet it
    assert "read-ahead failed" in caplog.text
    monkeypatch.setattr(body, "extract", real)
    assert decide(parsed, env(), fake_known(), config, NOW).new_text == "It smokes."
