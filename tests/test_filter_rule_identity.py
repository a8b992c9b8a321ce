"""rules/identity.py alone: forged and unverified authors."""

from __future__ import annotations

from filter_support import make_draft

from postdesk.auth.result import UNCHECKED, AuthResult
from postdesk.filter.rules import identity

MAIL = "From: c@cust.org\nSubject: x\n\nx"


def test_refuted_mail_is_forged_private_and_silent(config):
    for auth in (
        AuthResult(spf="fail", from_domain="cust.org", source="local"),
        AuthResult(dmarc="fail", from_domain="cust.org", source="local"),
        AuthResult(envelope_aligned=False, from_domain="cust.org", source="local"),  # MAIL FROM of another organisation, no aligned DKIM
    ):
        d = make_draft(MAIL, config, auth=auth)
        assert identity.apply(d) is None
        assert d.flags == {"forged"} and not (d.public or d.notify_team or d.send_ack), auth


def test_unverifiable_mail_is_flagged_only(config):
    for word in ("none", "temperror", "softfail", "neutral"):
        d = make_draft(MAIL, config, auth=AuthResult(spf=word, from_domain="cust.org", source="local"))
        identity.apply(d)
        assert d.flags == {"unverified"} and d.public and d.notify_team and d.send_ack


def test_verified_and_unchecked_mail_carry_no_flag(config):
    for auth in (AuthResult(dmarc="pass", from_domain="cust.org", source="local"), AuthResult(spf="pass", spf_aligned=True, from_domain="cust.org", source="local"), UNCHECKED):
        d = make_draft(MAIL, config, auth=auth)
        identity.apply(d)
        assert not d.flags


def test_proven_staff_are_left_alone(config):
    d = make_draft(MAIL, config, auth=AuthResult(spf="fail", from_domain="cust.org", source="local"))
    d.staff = True
    identity.apply(d)
    assert not d.flags and d.public


def test_the_log_line_carries_the_verdict_of_checked_mail(config, caplog):
    import logging
    import time

    from postdesk.filter.decision import Decision, Envelope, Kind
    from postdesk.ingest import log_result
    from postdesk.outcomes import Outcome, Result

    env = Envelope("c@cust.org", ("support@example.com",), queue_id="Q1")
    checked = Decision(kind=Kind.NEW, message_key="k", auth=AuthResult(spf="pass", dmarc="fail", from_domain="cust.org", source="local"), flags=frozenset({"forged"}))
    with caplog.at_level(logging.INFO, logger="postdesk"):
        log_result(env, Result(Outcome.CREATED, ticket=1000, decision=checked), time.monotonic())
        log_result(env, Result(Outcome.CREATED, ticket=1001, decision=Decision(kind=Kind.NEW, message_key="k")), time.monotonic())
    first, second = [r.getMessage() for r in caplog.records]
    assert "flags=forged" in first and "auth=spf:pass,dkim:none,dmarc:fail" in first
    assert "auth=" not in second
