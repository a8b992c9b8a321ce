"""rules/bounce.py alone: RFC 3464/5965 reports, the null sender, and the
non-standard formats flufl.bounce knows."""

from __future__ import annotations

from dataclasses import replace
from email.message import Message

import pytest
from filter_support import MemoryKnown, make_draft, ticket_info
from filter_support import headers_only as p

from postdesk.filter import decide, parse
from postdesk.filter import headers as hdr
from postdesk.filter.decision import Envelope, Kind
from postdesk.filter.rules import bounce
from postdesk.filter.rules.bounce import is_bounce
from postdesk.msgid import make_message_id

ENV = Envelope(sender="c@cust.org", recipients=("support@example.com",))


@pytest.mark.parametrize(
    "sender, author, headers",
    [
        ("", "c@cust.org", "Subject: x"),
        ("<>", "c@cust.org", "Subject: x"),
        ("MAILER-DAEMON@mx.cust.org", "c@cust.org", "Subject: x"),
        ("c@cust.org", "mailer-daemon@cust.org", "Subject: x"),
        ("<>", "postmaster@cust.org", "Subject: x"),
        ("c@cust.org", "c@cust.org", "Content-Type: multipart/report; report-type=delivery-status; boundary=b"),
        ("c@cust.org", "c@cust.org", "Content-Type: multipart/report; report-type=feedback-report; boundary=b"),
    ],
)
def test_bounces(sender, author, headers):
    assert is_bounce(parse(p(headers)), Envelope(sender, ("support@example.com",)), author)


def test_not_bounces():
    assert not is_bounce(parse(p("Subject: x")), ENV, "c@cust.org")
    assert not is_bounce(parse(p("Content-Type: multipart/report; report-type=disposition-notification; boundary=b")), ENV, "c@cust.org")


def test_report_without_report_type_decided_by_its_parts():
    report = "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n--b--\r\n"
    assert is_bounce(parse(p("Content-Type: multipart/report; boundary=b", report)), ENV, "c@cust.org")
    other = "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    assert not is_bounce(parse(p("Content-Type: multipart/report; boundary=b", other)), ENV, "c@cust.org")


def test_postmaster_with_a_real_sender_is_a_human():
    env = Envelope("postmaster@cust.org", ("support@example.com",))
    assert not is_bounce(parse(p("Subject: your server is on our blocklist", "Please check your SPF record.")), env, "postmaster@cust.org")


QMAIL = (
    "Hi. This is the qmail-send program at mx.cust.org.\r\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
    "<gone@cust.org>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
    "--- Below this line is a copy of the message.\r\n\r\nSubject: x\r\n"
)


def test_non_standard_bounce_from_a_real_sender_via_flufl_bounce():
    """A qmail bounce (not multipart/report) from postmaster with a real
    envelope sender: flufl.bounce recognises it."""
    env = Envelope("postmaster@mx.cust.org", ("support@example.com",))
    raw = parse(p("From: postmaster@mx.cust.org\nSubject: failure notice", QMAIL))
    assert is_bounce(raw, env, "postmaster@mx.cust.org")
    # the same text from a customer is a customer quoting a bounce
    assert not is_bounce(raw, ENV, "c@cust.org")


def test_forwarded_report_is_not_a_bounce():
    """A customer forwarding an NDR as an attachment: the report is inside message/rfc822, not the message."""
    body = (
        "--m\r\nContent-Type: text/plain\r\n\r\nMy mail bounces, see attached.\r\n"
        "--m\r\nContent-Type: message/rfc822\r\n\r\n"
        "From: MAILER-DAEMON@mx.cust.org\r\nSubject: Undelivered Mail\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
        "--r\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.cust.org\r\n\r\n"
        "Final-Recipient: rfc822; x@y\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--r--\r\n"
        "\r\n--m--\r\n"
    )
    assert not is_bounce(parse(("Content-Type: multipart/mixed; boundary=m\r\n\r\n" + body).encode()), ENV, "c@cust.org")
    nested = (
        "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n--m--\r\n"
    )
    assert not is_bounce(parse(nested.encode()), ENV, "c@cust.org")


def test_apply(config):
    null = Envelope("", ("support@example.com",))
    assert bounce.apply(make_draft("From: c@cust.org\nSubject: x\n\nx", config, null)).kind is Kind.IGNORE
    d = make_draft("From: c@cust.org\nSubject: x\n\nx", config, null, MemoryKnown([ticket_info(7, "c@cust.org")]))
    d.ticket = 7
    assert bounce.apply(d) is None
    assert "bounce" in d.flags and not (d.public or d.send_ack or d.notify_team)


# --- a bounce alert only for a report about our own mail -----------------------

NULL = Envelope("", ("support@example.com",), client_address="203.0.113.5")
ALICE = "alice@customer.example"
FAILED = ((ALICE, "5.1.1", "smtp; 550 5.1.1 <alice@customer.example>: no such user"),)


def ours(ticket: int) -> str:
    return make_message_id(ticket, b"test-secret", "example.com")


def dsn(returned_id: str, subject: str = "Undelivered Mail Returned to Sender", extra: str = "", returned: str = "") -> bytes:
    """A Postfix-style DSN (null sender) about a mail to ALICE whose returned headers carry ``returned_id``."""
    returned = returned or (f"From: Example <support@example.com>\r\nTo: {ALICE}\r\nSubject: [#1000] Printer broken\r\nMessage-ID: <{returned_id}>\r\n")
    return (
        f"From: MAILER-DAEMON@mail.customer.example (Mail Delivery System)\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <dsn.1@mail.customer.example>\r\n{extra}"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
        "--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered: hand this to staff.\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {ALICE}\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: {FAILED[0][2]}\r\n\r\n"
        f"--r\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--r--\r\n"
    ).encode()


def known(*extra):
    return MemoryKnown([ticket_info(1000, ALICE), ticket_info(1001, "mallory@evil.example"), *extra])


def run(raw: bytes, config, k=None):
    return decide(parse(raw), NULL, k if k is not None else known(), config, None)


def test_dsn_of_our_signed_mail_alerts(config):
    d = run(dsn(ours(1000)), config)
    assert (d.kind, d.ticket, d.bounce) == (Kind.FOLLOWUP, 1000, FAILED)
    assert "bounce" in d.flags and not (d.public or d.send_ack or d.notify_team)


def test_forged_dsn_naming_a_ticket_by_its_subject_alerts_nobody(config):
    """Anyone can send a null-sender multipart/report with "[#1000]" in its
    subject and a participant as Final-Recipient: still a private bounce
    action on the ticket, but no failed recipients, so no bounce-alert
    quoting the forger's Diagnostic-Code."""
    d = run(dsn("forged.1@evil.example", subject="Undelivered: [#1000] Printer broken"), config)
    assert (d.kind, d.ticket, d.bounce) == (Kind.FOLLOWUP, 1000, ())
    assert "bounce" in d.flags and not (d.public or d.send_ack or d.notify_team)


@pytest.mark.parametrize(
    "returned_id",
    [
        "forged.2@evil.example",
        ours(1001),  # our genuine Message-ID, but of the forger's own ticket
        ours(1000)[:-22] + "0" * 10 + "@example.com",  # our format, HMAC token that does not verify
        ours(1000).replace("pd.1000.", "pd.1001."),
    ],
    ids=["foreign", "ours-other-ticket", "bad-token", "renumbered"],
)
def test_dsn_without_our_message_id_of_this_ticket_alerts_nobody(config, returned_id):
    d = run(dsn(returned_id, subject="Undelivered: [#1000] Printer broken"), config)
    assert (d.ticket, d.bounce) == (1000, ())


def test_our_message_id_only_in_a_reference_of_the_returned_message_is_no_proof(config):
    returned = f"From: {ALICE}\r\nSubject: Re: [#1000] Printer broken\r\nMessage-ID: <r1@customer.example>\r\nIn-Reply-To: <{ours(1000)}>\r\n"
    d = run(dsn("", returned=returned), config)
    assert (d.ticket, d.bounce) == (1000, ())


def test_report_threading_onto_our_message_id_alerts(config):
    """Exchange NDRs name the bounced message in their own In-Reply-To/References."""
    raw = dsn("x@mail.customer.example", subject="Undeliverable: [#1000] Printer broken", extra=f"In-Reply-To: <{ours(1000)}>\r\nReferences: <{ours(1000)}>\r\n")
    assert run(raw, config).bounce == FAILED


def test_dsn_of_our_mail_on_a_ticket_merged_since(config):
    k = known(replace(ticket_info(999, ALICE), merged_into=1000))
    d = run(dsn(ours(999)), config, k)
    assert (d.ticket, d.bounce) == (1000, FAILED)


def test_non_standard_bounce_alerts_only_when_it_quotes_our_message_id(config):
    def qmail(msgid: str) -> bytes:
        return (
            "From: MAILER-DAEMON@mx.customer.example\r\nTo: support@example.com\r\nSubject: failure notice\r\n\r\n"
            "Hi. This is the qmail-send program at mx.customer.example.\r\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
            f"<{ALICE}>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
            "--- Below this line is a copy of the message.\r\n\r\n"
            f"Subject: [#1000] Printer broken\r\nMessage-ID: <{msgid}>\r\n\r\nHello\r\n"
        ).encode()

    def apply(raw: bytes):
        d = make_draft(raw, config, NULL, known())
        d.ticket = 1000  # e.g. found by a tag in the subject
        assert bounce.apply(d) is None and "bounce" in d.flags
        return d.bounce

    assert apply(qmail(ours(1000))) == ((ALICE, "", "a non-standard delivery report"),)
    assert apply(qmail("forged.3@evil.example")) == ()


# --- a big part is cut before it is decoded ---------------------------------------


@pytest.fixture
def decoded(monkeypatch):
    """The lengths of the byte strings ``lenient_decode`` is given."""
    sizes: list[int] = []
    real = hdr.lenient_decode

    def spy(data, charset=None, hint=""):
        sizes.append(len(data))
        return real(data, charset, hint)

    monkeypatch.setattr(hdr, "lenient_decode", spy)
    return sizes


def test_huge_returned_headers_part_decodes_at_most_64_kb(config, decoded):
    """A megabyte text/rfc822-headers part in a slow charset (punycode's
    decoder is quadratic): at most MAX_TEXT bytes reach the decoder."""
    mid = ours(1000)
    returned = f"Subject: [#1000] Printer broken\r\nMessage-ID: <{mid}>\r\nX-Pad: " + "-" + "a" * (1024 * 1024) + "\r\n"
    raw = dsn("", returned=returned).replace(b"Content-Type: text/rfc822-headers", b"Content-Type: text/rfc822-headers; charset=punycode")
    d = make_draft(raw, config, NULL, known())
    decoded.clear()
    assert bounce.returned_message(d.parsed.message) == ("[#1000] Printer broken", (mid,))
    assert decoded and max(decoded) <= bounce.MAX_TEXT
    decoded.clear()
    assert bounce.apply(d) is None
    assert (d.ticket, d.bounce) == (1000, FAILED)
    assert decoded and max(decoded) <= bounce.MAX_TEXT


def test_huge_delivery_status_text_decodes_at_most_64_kb(decoded):
    """A delivery-status part left as text (message/global-delivery-status):
    its blocks are parsed from at most MAX_TEXT decoded bytes."""
    block = f"Final-Recipient: rfc822; {ALICE}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    part = Message()
    part["Content-Type"] = "message/global-delivery-status; charset=punycode"
    part.set_payload("Reporting-MTA: dns; x\r\n\r\n" + block * (1024 * 1024 // len(block)))
    decoded.clear()
    blocks = bounce._blocks(part)
    assert decoded and max(decoded) <= bounce.MAX_TEXT
    assert 1 < len(blocks) <= bounce.MAX_TEXT // len(block) + 1
    assert str(blocks[1]["final-recipient"]) == f"rfc822; {ALICE}"


def test_head_text_cuts_at_a_line_end():
    raw = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + ("\u00e9" * 40 + "\n").encode() * 2000
    text = bounce.head_text(parse(raw).message, limit=1000)
    assert text.endswith("\n") and "\ufffd" not in text and len(text.encode()) <= 1000


@pytest.mark.parametrize("content_type", ["message/delivery-status", "message/global-delivery-status"])
def test_failed_recipients_of_a_parsed_report_either_type(content_type):
    """RFC 6533's global reports (UTF-8 addresses) as parsed from the wire:
    the email package reads message/global-delivery-status as one embedded
    message, so its per-recipient blocks sit in that message's body."""
    raw = (
        "From: MAILER-DAEMON@mx.cust.org\r\nTo: support@example.com\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        f"--b\r\nContent-Type: {content_type}\r\n\r\nReporting-MTA: dns; mx.cust.org\r\n\r\n"
        "Final-Recipient: utf-8; j\u00fcrgen@cust.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Final-Recipient: rfc822; later@cust.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
        "Final-Recipient: rfc822; full@cust.org\r\nAction: failed\r\nStatus: 5.2.2\r\nDiagnostic-Code: smtp; 552 mailbox full\r\n"
        "--b--\r\n"
    ).encode()
    assert bounce.failed_recipients(parse(raw).message) == (
        ("j\u00fcrgen@cust.org", "5.1.1", ""),
        ("full@cust.org", "5.2.2", "smtp; 552 mailbox full"),
    )


def test_after_read_ahead_the_rule_reads_nothing_of_the_report_again(config, monkeypatch):
    """A bounce's report (returned headers, failed recipients, flufl.bounce)
    is read on the session's thread by read_ahead; inside the store's
    transaction the rule only looks it up."""
    from postdesk.filter.pipeline import read_ahead

    raw = dsn(ours(1000))
    parsed = parse(raw)
    read_ahead(parsed, NULL, config)
    expected = run(raw, config)

    def again(*_a, **_k):
        raise AssertionError("read a second time inside decide()")

    for name in ("_returned_headers", "failed_recipients", "head_text"):
        monkeypatch.setattr(bounce, name, again)
    d = decide(parsed, NULL, known(), config, None)
    assert (d.kind, d.ticket, d.bounce) == (expected.kind, expected.ticket, expected.bounce) == (Kind.FOLLOWUP, 1000, FAILED)


def test_flufl_bounce_scans_a_message_once(monkeypatch):
    """is_bounce and the failed recipients share one flufl.bounce scan."""
    import flufl.bounce

    raw = b"From: postmaster@mx.cust.org\r\nTo: support@example.com\r\nSubject: failure notice\r\n\r\nSorry.\r\n"
    calls = []
    monkeypatch.setattr(flufl.bounce, "scan_message", lambda msg: calls.append(msg) or {b"c@cust.org"})
    parsed = parse(raw)
    assert bounce.flufl_bounce(parsed) and bounce.read(parsed).failed == (("c@cust.org", "", "a non-standard delivery report"),)
    assert len(calls) == 1


def test_a_report_of_many_parts_and_tiny_blocks_is_read_only_so_far(monkeypatch):
    """A forged report with 30 global delivery-status parts of 64 KB of
    tiny blocks cost 6 s of header parsing; only the first report part and
    its first MAX_BLOCKS blocks are read."""
    from email.parser import HeaderParser

    parsed_blocks = []

    class Counting(HeaderParser):
        def parsestr(self, text, headersonly=False):
            parsed_blocks.append(len(text))
            return super().parsestr(text, headersonly)

    monkeypatch.setattr(bounce, "HeaderParser", Counting)
    block = f"Final-Recipient: rfc822; {ALICE}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    part = "--b\r\nContent-Type: message/global-delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n" + block * (64 * 1024 // len(block))
    raw = (
        "From: MAILER-DAEMON@mx.cust.org\r\nTo: support@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n' + part * 30 + "--b--\r\n"
    ).encode()
    failed = bounce.failed_recipients(parse(raw).message)
    assert failed == ((ALICE, "5.1.1", ""),) * bounce.MAX_FAILED
    assert 0 < len(parsed_blocks) <= bounce.MAX_BLOCKS
