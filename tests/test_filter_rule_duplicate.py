"""rules/duplicate.py alone: Message-ID together with sender and content."""

from __future__ import annotations

from filter_support import MemoryKnown, make_draft

from postdesk.auth.result import AuthResult
from postdesk.filter.decision import Kind
from postdesk.filter.rules import duplicate

MAIL = "From: c@cust.org\nMessage-ID: <m1@cust.org>\nSubject: Printer\n\nIt smokes."


def test_same_message_same_content_is_a_duplicate(config):
    first = make_draft(MAIL, config)
    again = make_draft(MAIL.replace("\n", "\r\n"), config, known=MemoryKnown(seen=[("m1@cust.org", first.digest)]))
    d = duplicate.apply(again)
    assert d is not None and d.kind is Kind.DUPLICATE


def test_same_message_id_other_sender_or_content_is_not(config):
    genuine = make_draft(MAIL, config)
    seen = MemoryKnown(seen=[("m1@cust.org", genuine.digest)])
    for other in (
        MAIL.replace("From: c@cust.org", "From: mallory@evil.example"),
        MAIL.replace("It smokes.", "Please wire the money."),
        MAIL.replace("Subject: Printer", "Subject: Invoice"),
        MAIL.replace("Subject: Printer", "Cc: accomplice@evil.example\nSubject: Printer"),
    ):
        assert duplicate.apply(make_draft(other, config, known=seen)) is None
    # nor is a copy that failed authentication where the recorded one did not
    assert duplicate.apply(make_draft(MAIL, config, known=seen, auth=AuthResult(spf="fail", from_domain="cust.org", source="local"))) is None


def test_a_forged_copy_recorded_first_does_not_swallow_the_genuine_one(config):
    forged = make_draft(MAIL, config, auth=AuthResult(spf="fail", from_domain="cust.org", source="local"))
    seen = MemoryKnown(seen=[("m1@cust.org", forged.digest)])
    assert duplicate.apply(make_draft(MAIL, config, known=seen)) is None
    # A copy nobody could authenticate (its domain publishes nothing) does not
    # swallow the genuine, authenticated one either.
    unverified = make_draft(MAIL, config, auth=AuthResult(from_domain="cust.org", source="local"))
    seen = MemoryKnown(seen=[("m1@cust.org", unverified.digest)])
    verified = AuthResult(dmarc="pass", spf="pass", spf_aligned=True, from_domain="cust.org", source="local")
    assert duplicate.apply(make_draft(MAIL, config, known=seen, auth=verified)) is None
    # ... while a redelivery of the same message is still a duplicate.
    again = make_draft(MAIL, config, known=seen, auth=AuthResult(from_domain="cust.org", source="local"))
    assert duplicate.apply(again) is not None
