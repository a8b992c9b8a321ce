"""rules/new_tickets.py alone: the per-sender new-ticket rate."""

from __future__ import annotations

from datetime import datetime, timedelta

from filter_support import MemoryKnown, make_draft

from postdesk.auth.result import AuthResult
from postdesk.filter.decision import Kind
from postdesk.filter.rules import new_tickets

NOW = datetime(2026, 1, 1, 12, 0, 0)
MAIL = "From: c@cust.org\nSubject: x\n\nx"


def known(*ages_forged):
    return MemoryKnown(opened=[("c@cust.org", NOW - timedelta(seconds=age), forged) for age, forged in ages_forged])


def test_over_the_limit_is_deferred(make_config):
    cfg = make_config(limits={"new_tickets_per_sender": 2, "new_ticket_window": 3600})
    assert new_tickets.apply(make_draft(MAIL, cfg, known=known((10, False)), now=NOW)) is None
    d = new_tickets.apply(make_draft(MAIL, cfg, known=known((10, False), (20, False)), now=NOW))
    assert d is not None and d.kind is Kind.DEFER and "too many new tickets from c@cust.org" in d.reason
    # outside the window
    assert new_tickets.apply(make_draft(MAIL, cfg, known=known((4000, False), (5000, False)), now=NOW)) is None


def test_forged_tickets_count_only_against_forged_mail(make_config):
    cfg = make_config(limits={"new_tickets_per_sender": 2})
    two_forged = known((10, True), (20, True))
    assert new_tickets.apply(make_draft(MAIL, cfg, known=two_forged, now=NOW)) is None
    forged = AuthResult(spf="fail", from_domain="cust.org", source="local")
    assert new_tickets.apply(make_draft(MAIL, cfg, known=two_forged, now=NOW, auth=forged)).kind is Kind.DEFER


def test_not_for_followups_staff_or_when_off(make_config):
    cfg = make_config(limits={"new_tickets_per_sender": 1})
    full = known((10, False))
    d = make_draft(MAIL, cfg, known=full, now=NOW)
    d.ticket = 7
    assert new_tickets.apply(d) is None
    d = make_draft(MAIL, cfg, known=full, now=NOW)
    d.staff = True
    assert new_tickets.apply(d) is None
    off = make_config(limits={"new_tickets_per_sender": 0})
    assert new_tickets.apply(make_draft(MAIL, off, known=full, now=NOW)) is None


def test_unverified_forgeries_do_not_use_up_an_authenticated_senders_quota(make_config):
    """A domain that publishes nothing cannot be refuted, so forgeries in its
    name are "unverified"; the real sender, once authenticated, counts only
    tickets opened by authenticated mail."""
    cfg = make_config(limits={"new_tickets_per_sender": 2})
    two_unverified = MemoryKnown(
        opened=[("c@cust.org", NOW - timedelta(seconds=10), False), ("c@cust.org", NOW - timedelta(seconds=20), False)],
        opened_verified=[("c@cust.org", NOW - timedelta(seconds=10), False), ("c@cust.org", NOW - timedelta(seconds=20), False)],
    )
    verified = AuthResult(spf="pass", dmarc="pass", spf_aligned=True, from_domain="cust.org", source="local")
    assert new_tickets.apply(make_draft(MAIL, cfg, known=two_unverified, now=NOW, auth=verified)) is None
    unverified = AuthResult(from_domain="cust.org", source="local")
    assert new_tickets.apply(make_draft(MAIL, cfg, known=two_unverified, now=NOW, auth=unverified)).kind is Kind.DEFER
