"""rules/loop.py alone."""

from __future__ import annotations

from filter_support import headers_only as p
from filter_support import make_draft

from postdesk.filter import parse
from postdesk.filter.decision import Envelope, Kind
from postdesk.filter.rules import loop
from postdesk.filter.rules.loop import is_loop

ENV = Envelope(sender="c@cust.org", recipients=("support@example.com",))


def test_loop_marker_and_own_addresses(config):
    assert is_loop(parse(p("X-Postdesk-Loop: support@example.com")), ENV, "c@cust.org", config)
    assert is_loop(parse(p("X-Postdesk-Loop: <Support@Example.com>")), ENV, "c@cust.org", config)
    assert not is_loop(parse(p("X-Postdesk-Loop: other@desk.example")), ENV, "c@cust.org", config)
    assert is_loop(parse(p("Subject: x")), ENV, "support@example.com", config)
    assert is_loop(parse(p("Subject: x")), ENV, "help@example.com", config)  # any system address
    assert is_loop(parse(p("Subject: x")), Envelope("SUPPORT@example.com", ("support@example.com",)), "c@cust.org", config)
    assert not is_loop(parse(p("Subject: x")), ENV, "c@cust.org", config)


def test_apply_stops_the_chain(config):
    d = loop.apply(make_draft("From: c@cust.org\nX-Postdesk-Loop: support@example.com\nSubject: x\n\nx", config))
    assert d is not None and d.kind is Kind.IGNORE and d.flags == {"loop"}
    assert loop.apply(make_draft("From: c@cust.org\nSubject: x\n\nx", config)) is None
