"""loops.py, tags.py, trust.py: the small predicates, alone."""

from __future__ import annotations

import pytest

from postdesk.filter import parse
from postdesk.filter.decision import Envelope
from postdesk.filter.loops import automation, is_auto, is_bounce, is_list, is_loop
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
        ("c@cust.org", "postmaster@cust.org", "Subject: x"),
        ("c@cust.org", "c@cust.org", "Content-Type: multipart/report; report-type=delivery-status; boundary=b"),
        ("c@cust.org", "c@cust.org", "Content-Type: multipart/report; report-type=feedback-report; boundary=b"),
    ],
)
def test_bounces(sender, author, headers):
    assert is_bounce(p(headers), Envelope(sender, ("support@example.com",)), author)


def test_not_bounces():
    assert not is_bounce(p("Subject: x"), ENV, "c@cust.org")
    assert not is_bounce(p("Content-Type: multipart/report; report-type=disposition-notification; boundary=b"), ENV, "c@cust.org")


@pytest.mark.parametrize(
    "headers",
    ["Auto-Submitted: auto-replied", "Auto-Submitted: auto-generated; owner-email=x@y", "Precedence: bulk", "Precedence: junk", "X-Auto-Response-Suppress: All"],
)
def test_auto(headers):
    assert is_auto(p(headers))


@pytest.mark.parametrize("headers", ["Auto-Submitted: no", "Auto-Submitted: No (human)", "Precedence: normal", "Subject: x"])
def test_not_auto(headers):
    assert not is_auto(p(headers))


@pytest.mark.parametrize("headers", ["Precedence: list", "List-Id: <users.lists.example>", "List-Unsubscribe: <mailto:u@x>"])
def test_list(headers):
    assert is_list(p(headers))
    assert not is_list(p("Subject: x"))


def test_automation_flags(config):
    a = automation(p("Auto-Submitted: auto-replied\nList-Id: <l.x>"), Envelope("", ("support@example.com",)), "c@cust.org", config)
    assert a.flags == {"bounce", "auto", "list"}


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
