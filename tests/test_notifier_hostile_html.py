"""Hostile HTML from any sender neither stalls nor stops the notifier: the
quote cut (``postdesk.notifier.html.new_html``) does bounded work and never
hits the recursion limit, and a failure there makes that one entry text only
(``postdesk.notifier.policy.entry``), never the batch."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from postdesk.notifier import html as notifier_html
from postdesk.notifier import policy
from postdesk.notifier.html import MAX_NODES, new_html
from postdesk.outbox_rows import AckHistory, ActionRow, Claimed, Job, Person

NOW = datetime(2026, 11, 27, 12, 0, 0)
BOB = Person("bob@example.com", "Bob", staff=True)
N = 20_000


def _seconds(html: str) -> float:
    """The best of two runs of the cut (the cache cleared: it keys on the HTML)."""
    best = float("inf")
    for _ in range(2):
        new_html.cache_clear()
        t0 = time.perf_counter()
        new_html(html)
        best = min(best, time.perf_counter() - t0)
    return best


def test_a_run_of_separators_is_read_once():
    """Each <hr> once looked for the header after it in all later siblings:
    2,500 took seconds, 5,000 tens of seconds.  Now as fast as as many
    paragraphs (a ratio, not a time: the machine may be busy)."""
    hostile = "<p>help</p>" + "<hr>" * N
    plain = "<p>help</p>" + "<p>x</p>" * N
    assert _seconds(hostile) < 20 * _seconds(plain)
    out = new_html(hostile)
    assert out.startswith("<p>help</p><hr>") and out.count("<hr>") == N  # a rule without a header is no quote


def test_outlook_separators_after_a_run_of_rules_are_still_found():
    out = new_html("<p>New</p>" + "<hr>" * 50 + "<div><b>From:</b> Jane<br><b>Sent:</b> Monday</div><p>Old</p>")
    assert "New" in out and "Old" not in out and "Sent" not in out


def test_deep_nesting_does_not_raise():
    html = "<p>hello</p>" + "<b>" * 5000 + "deep" + "</b>" * 5000
    out = new_html(html)
    assert "hello" in out and "deep" in out and out.count("<b>") == out.count("</b>") > 0
    a = ActionRow(1, "message", True, BOB, "t", "t", NOW, html=html)
    assert "deep" in policy.entry(a, customer=True).html


def test_quotes_inside_deep_markup_are_still_cut():
    html = "<div>" * 100 + 'New<blockquote type="cite">Old</blockquote>' + "</div>" * 100
    out = new_html(html)
    assert "New" in out and "Old" not in out


def test_too_many_nodes_goes_as_text_only():
    assert new_html("<br>" * (MAX_NODES + 1)) == ""


def failing_on_bad(error: Exception):
    """A new_html that raises ``error`` for HTML holding "bad", else returns it."""

    def broken(html: str) -> str:
        if "bad" in html:
            raise error
        return html

    return broken


def test_a_failing_cut_makes_that_entry_text_only(monkeypatch, caplog):
    monkeypatch.setattr(notifier_html, "new_html", failing_on_bad(RecursionError("maximum recursion depth exceeded")))
    a = ActionRow(7, "message", True, BOB, "whole text", "new text", NOW, html="<p>bad</p>")
    with caplog.at_level(logging.WARNING, logger="postdesk.notifier"):
        e = policy.entry(a, customer=True, ticket=1042)
    assert e.html == "" and e.text == "new text"
    assert [r.getMessage() for r in caplog.records] == ['html dropped: ticket=1042 action=7 reason="RecursionError: maximum recursion depth exceeded" (sent as text only)']


def test_a_failing_cut_does_not_fail_the_batch(monkeypatch, config):
    monkeypatch.setattr(notifier_html, "new_html", failing_on_bad(ValueError("boom")))

    def ack_row(row_id: int, to: str, html: str) -> Claimed:
        action = ActionRow(row_id, "message", True, Person(to), "t", "t", NOW, html=html)
        return Claimed(row_id, 1, "ack", 1, 1000 + row_id, "Subject", "open", True, Person(to), NOW, action=action)

    out = policy.decide([ack_row(1, "a@x.test", "<p>bad</p>"), ack_row(2, "b@y.test", "<p>good</p>")], AckHistory(sent={}), config, NOW)
    assert [type(d) for d in out] == [Job, Job]
    assert [d.entries[0].html for d in out if isinstance(d, Job)] == ["", "<p>good</p>"]
