"""rules/recipients.py and rules/team_alert.py alone."""

from __future__ import annotations

from filter_support import MemoryKnown, make_draft, ticket_info

from postdesk.filter.decision import Envelope, Kind
from postdesk.filter.rules import recipients, team_alert

REPLY = "From: bob@example.com\nTo: c@cust.org\nSubject: Re: [#7] x\n\nDone."
KNOWN = MemoryKnown([ticket_info(7, "c@cust.org")])


def test_system_address_goes_on(config):
    d = make_draft("From: c@cust.org\nTo: support@example.com, Other <o@cust.org>\nSubject: x\n\nx", config)
    assert recipients.apply(d) is None and d.cc == ("o@cust.org",)


def test_direct_staff_mail_needs_a_sasl_login_and_a_ticket(config):
    sasl = Envelope("bob@example.com", ("c@cust.org",), client_address="203.0.113.9", sasl_username="bob@example.com")
    d = make_draft(REPLY, config, sasl, KNOWN)
    assert recipients.apply(d) is None and d.flags == {"direct"} and d.cc == ("c@cust.org",)
    # a trusted network is not enough for mail that leaves to a customer
    net = Envelope("bob@example.com", ("c@cust.org",), client_address="127.0.0.1")
    assert recipients.apply(make_draft(REPLY, config, net, KNOWN)).kind is Kind.IGNORE
    # nor is a login that is only the local part
    local = Envelope("bob@example.com", ("c@cust.org",), client_address="203.0.113.9", sasl_username="bob")
    assert recipients.apply(make_draft(REPLY, config, local, KNOWN)).kind is Kind.IGNORE
    # no such ticket
    assert recipients.apply(make_draft(REPLY, config, sasl, MemoryKnown())).kind is Kind.IGNORE


def test_team_alert_not_for_staff_followups(config):
    d = make_draft("From: c@cust.org\nSubject: x\n\nx", config)
    team_alert.apply(d)
    assert d.notify_team
    d.ticket, d.staff = 7, True
    team_alert.apply(d)
    assert not d.notify_team
