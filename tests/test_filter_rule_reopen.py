"""rules/reopen.py: a customer's reply to a pending or closed ticket."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from filter_support import MemoryKnown, make_draft

from postdesk.filter.decision import TicketInfo
from postdesk.filter.rules import reopen

NOW = datetime(2026, 1, 1, 12, 0, 0)


def draft(config, status: str, text: str = "It broke again.", closed_ago: float | None = 3600, author: str = "c@cust.org", staff=False):
    closed_at = NOW - timedelta(seconds=closed_ago) if closed_ago is not None else None
    known = MemoryKnown(tickets=[TicketInfo(7, status, "c@cust.org", frozenset({"c@cust.org"}), closed_at=closed_at)])
    d = make_draft(f"From: {author}\nSubject: Re: [#7] x\n\n{text}", config, known=known, now=NOW)
    d.ticket, d.new_text, d.staff = 7, text, staff
    return d


def test_pending_reply_sets_open(config):
    d = draft(config, "pending")
    reopen.apply(d)
    assert d.status == "open" and d.ticket == 7


def test_closed_within_window_reopens(config):
    d = draft(config, "closed", closed_ago=3600)
    reopen.apply(d)
    assert d.status == "open" and "reopened" in d.flags and d.ticket == 7


def test_closed_long_ago_opens_a_follow_up(make_config):
    config = make_config(lifecycle={"reopen_window": 86400})
    d = draft(config, "closed", closed_ago=86401)
    reopen.apply(d)
    assert d.ticket is None and d.follow_up_of == 7 and d.status == "" and "follow-up" in d.flags
    assert d.finish().kind.value == "new"


@pytest.mark.parametrize("text", ["Thanks!", "Thank you so much :)", "Vielen Dank!", "Merci beaucoup", "thx"])
def test_thanks_only_does_not_reopen(config, text):
    for ago in (60, 10**9):
        d = draft(config, "closed", text=text, closed_ago=ago)
        reopen.apply(d)
        assert d.status == "" and d.ticket == 7 and d.follow_up_of is None and "thanks" in d.flags and not d.notify_team


@pytest.mark.parametrize(
    "text",
    ["Thanks, but it still does not work.", "Thanks! Could you also check my invoice?", "Danke, aber es geht noch nicht", "Thanks " + "a" * 300],
)
def test_thanks_with_more_reopens(config, text):
    d = draft(config, "closed", text=text)
    reopen.apply(d)
    assert d.status == "open" and "thanks" not in d.flags


def test_thanks_phrases_are_configurable(make_config):
    config = make_config(lifecycle={"thanks_phrases": ["tack"]})
    d = draft(config, "closed", text="Tack!")
    reopen.apply(d)
    assert "thanks" in d.flags
    d = draft(config, "closed", text="Thanks!")
    reopen.apply(d)
    assert d.status == "open"


@pytest.mark.parametrize("flag", ["auto", "bounce", "forged", "untrusted"])
def test_machines_and_forgers_do_not_reopen(config, flag):
    d = draft(config, "closed")
    d.flags.add(flag)
    reopen.apply(d)
    assert d.status == "" and d.ticket == 7


def test_staff_and_strangers_do_not_reopen(config):
    d = draft(config, "closed", staff=True, author="bob@example.com")
    reopen.apply(d)
    assert d.status == ""
    d = draft(config, "closed", author="someone@else.org")
    reopen.apply(d)
    assert d.status == "" and d.ticket == 7


def test_open_ticket_unchanged(config):
    d = draft(config, "open")
    reopen.apply(d)
    assert d.status == "" and not d.flags
