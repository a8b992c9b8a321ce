"""rules/stranger.py alone: newcomers, and the Message-IDs we sent them."""

from __future__ import annotations

from filter_support import MemoryKnown, make_draft, ticket_info

from postdesk.filter.rules import stranger


def draft(config, author="new@cust.org", refs="", sent=None):
    extra = f"In-Reply-To: <{refs}>\n" if refs else ""
    known = MemoryKnown([ticket_info(7, "c@cust.org", ["colleague@cust.org"])], sent=sent)
    d = make_draft(f"From: {author}\n{extra}Subject: Re: x\n\nx", config, known=known)
    d.ticket = 7
    return d


def test_participants_are_no_strangers(config):
    d = draft(config, author="colleague@cust.org")
    stranger.apply(d)
    assert not d.flags and d.public


def test_newcomer_is_private_and_flagged(config):
    d = draft(config)
    stranger.apply(d)
    assert d.flags == {"stranger"} and not d.public


def test_answering_mail_we_sent_them_admits_them(config):
    d = draft(config, refs="pd.7.ab.cd@example.com", sent={"pd.7.ab.cd@example.com": ("new@cust.org", 7)})
    stranger.apply(d)
    assert not d.flags and d.public


def test_answering_mail_we_sent_someone_else_does_not(config):
    """A customer's colleague answering a forwarded update."""
    d = draft(config, refs="pd.7.ab.cd@example.com", sent={"pd.7.ab.cd@example.com": ("c@cust.org", 7)})
    stranger.apply(d)
    assert d.flags == {"stranger"}
    # nor mail we sent them about another ticket
    d = draft(config, refs="pd.8.ab.cd@example.com", sent={"pd.8.ab.cd@example.com": ("new@cust.org", 8)})
    stranger.apply(d)
    assert d.flags == {"stranger"}


def test_staff_bounces_and_new_tickets_are_not_judged(config):
    d = draft(config)
    d.staff = True
    stranger.apply(d)
    assert not d.flags
    d = draft(config)
    d.flags.add("bounce")
    stranger.apply(d)
    assert d.flags == {"bounce"}
    d = draft(config)
    d.ticket = None
    stranger.apply(d)
    assert not d.flags
