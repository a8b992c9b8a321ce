"""loops.py, tags.py, trust.py: the small predicates, alone."""

from __future__ import annotations

import pytest

from postdesk.filter import parse
from postdesk.filter.decision import Envelope
from postdesk.filter.loops import automation, is_auto, is_bounce, is_bulk, is_list, is_loop
from postdesk.filter.tags import find_commands
from postdesk.filter.trust import sasl_maps_to, trust

ENV = Envelope(sender="c@cust.org", recipients=("support@example.com",))


def p(headers: str, body: str = "x") -> object:
    return parse((headers.replace("\n", "\r\n") + "\r\n\r\n" + body).encode())


def test_loop_marker_and_own_addresses(config):
    assert is_loop(p("X-Postdesk-Loop: support@example.com"), ENV, "c@cust.org", config)
    assert is_loop(p("X-Postdesk-Loop: <Support@Example.com>"), ENV, "c@cust.org", config)
    assert not is_loop(p("X-Postdesk-Loop: other@desk.example"), ENV, "c@cust.org", config)
    assert is_loop(p("Subject: x"), ENV, "support@example.com", config)
    assert is_loop(p("Subject: x"), ENV, "help@example.com", config)  # any system address
    assert is_loop(p("Subject: x"), Envelope("SUPPORT@example.com", ("support@example.com",)), "c@cust.org", config)
    assert not is_loop(p("Subject: x"), ENV, "c@cust.org", config)


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
    assert is_bounce(p(headers), Envelope(sender, ("support@example.com",)), author)


def test_not_bounces():
    assert not is_bounce(p("Subject: x"), ENV, "c@cust.org")
    assert not is_bounce(p("Content-Type: multipart/report; report-type=disposition-notification; boundary=b"), ENV, "c@cust.org")


def test_report_without_report_type_decided_by_its_parts():
    report = "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n--b--\r\n"
    assert is_bounce(p("Content-Type: multipart/report; boundary=b", report), ENV, "c@cust.org")
    other = "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    assert not is_bounce(p("Content-Type: multipart/report; boundary=b", other), ENV, "c@cust.org")


def test_postmaster_with_a_real_sender_is_a_human():
    env = Envelope("postmaster@cust.org", ("support@example.com",))
    assert not is_bounce(p("Subject: your server is on our blocklist"), env, "postmaster@cust.org")


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
    msg = parse(("Content-Type: multipart/mixed; boundary=m\r\n\r\n" + body).encode())
    assert not is_bounce(msg, ENV, "c@cust.org")
    # the same report one level down, not attached but nested in a multipart/mixed, is not one either
    nested = parse(
        (
            "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n"
            "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n--m--\r\n"
        ).encode()
    )
    assert not is_bounce(nested, ENV, "c@cust.org")


@pytest.mark.parametrize(
    "headers",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated; owner-email=x@y",
        "Precedence: junk",
        "Precedence: auto_reply",
        "X-Autoreply: yes",
        "X-Autorespond: Vacation",
    ],
)
def test_auto(headers):
    assert is_auto(p(headers))


@pytest.mark.parametrize(
    "headers",
    [
        "Auto-Submitted: no",
        "Auto-Submitted: No (human)",
        "Precedence: normal",
        "Subject: x",
        # "don't auto-answer me" is not "a machine wrote this"
        "Precedence: bulk",
        "Precedence: list",
        "X-Auto-Response-Suppress: All",
        "List-Unsubscribe: <mailto:u@x>",
    ],
)
def test_not_auto(headers):
    assert not is_auto(p(headers))


@pytest.mark.parametrize("headers", ["Precedence: list", "List-Id: <users.lists.example>", "List-Unsubscribe: <mailto:u@x>", "List-Post: <mailto:users@lists.example>"])
def test_list(headers):
    assert is_list(p(headers))
    assert not is_list(p("Subject: x"))
    assert not is_list(p("Precedence: bulk"))


@pytest.mark.parametrize("headers", ["Precedence: bulk", "X-Auto-Response-Suppress: All", "X-Auto-Response-Suppress: OOF, AutoReply"])
def test_bulk(headers):
    assert is_bulk(p(headers))
    assert not is_bulk(p("Subject: x"))
    assert not is_bulk(p("Precedence: list"))


def test_automation_flags(config):
    a = automation(
        p("Auto-Submitted: auto-replied\nList-Id: <l.x>\nPrecedence: bulk"), Envelope("", ("support@example.com",)), "c@cust.org", config
    )
    assert a.flags == {"bounce", "auto", "list", "bulk"}
    assert a.no_ack


@pytest.mark.parametrize(
    "subject, body, pvt, closed",
    [
        ("[pvt] note", "", True, False),
        ("x", "internal [PVT] remark", True, False),
        ("[Closed] done", "", False, True),
        ("x", "Fixed.\n[closed]", False, True),
        ("[pvt][closed]", "", True, True),
        ("private note", "closed the case", False, False),
        ("[ pvt ]", "", True, False),
    ],
)
def test_commands(subject, body, pvt, closed):
    c = find_commands(subject, body)
    assert (c.pvt, c.closed) == (pvt, closed)


def test_sasl_mapping():
    assert sasl_maps_to("alice@example.com", "alice@example.com")
    assert sasl_maps_to("ALICE", "alice@example.com")
    assert not sasl_maps_to("bob", "alice@example.com")
    assert not sasl_maps_to("", "alice@example.com")
    assert not sasl_maps_to("alice@example.com.evil", "alice@example.com")


def test_trust(config):
    outside = "203.0.113.5"
    t = trust("alice@example.com", Envelope("alice@example.com", (), client_address=outside, sasl_username="alice"), config)
    assert (t.claims_staff, t.staff, t.sasl, t.untrusted) == (True, True, True, False)
    t = trust("alice@example.com", Envelope("alice@example.com", (), client_address="127.0.0.1"), config)
    assert (t.staff, t.sasl) == (True, False)
    t = trust("alice@example.com", Envelope("alice@example.com", (), client_address=outside, sasl_username="bob"), config)
    assert (t.staff, t.untrusted) == (False, True)
    t = trust("c@cust.org", Envelope("c@cust.org", (), client_address="127.0.0.1", sasl_username="c@cust.org"), config)
    assert (t.claims_staff, t.staff, t.untrusted) == (False, False, False)
