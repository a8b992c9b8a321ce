"""rules/bounce.py alone: RFC 3464/5965 reports, the null sender, and the
non-standard formats flufl.bounce knows."""

from __future__ import annotations

import pytest
from filter_support import MemoryKnown, make_draft, ticket_info
from filter_support import headers_only as p

from postdesk.filter import parse
from postdesk.filter.decision import Envelope, Kind
from postdesk.filter.rules import bounce
from postdesk.filter.rules.bounce import is_bounce

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
