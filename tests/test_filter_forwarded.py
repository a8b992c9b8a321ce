"""postdesk/filter/forwarded.py and rules/forwarded.py (the corpus has a
mail per client style: tests/data/mail/fwd-*)."""

from __future__ import annotations

import pytest
from filter_support import make_draft

from postdesk.filter import forwarded
from postdesk.filter.rules import forwarded as rule


@pytest.mark.parametrize(
    "value, name, address",
    [
        ("Jana Müller <jana@kunde.example>", "Jana Müller", "jana@kunde.example"),
        ("Tiger Lily [mailto:lily@island.example]", "Tiger Lily", "lily@island.example"),
        ('"Hook, James" <James.Hook@Jolly-Roger.example>', "Hook, James", "james.hook@jolly-roger.example"),
        ("*Peter* <peter@x.example>", "Peter", "peter@x.example"),
        ("peter@x.example", "", "peter@x.example"),
        ("nobody at all", "", ""),
    ],
)
def test_sender(value, name, address):
    assert forwarded.sender(value) == ((name, address) if address else ("", ""))


def test_french_thunderbird():
    text = "Voir ci-dessous.\n\n-------- Message transféré --------\nSujet : Facture\nDe : Amélie <amelie@client.example>\n\nBonjour"
    f = forwarded.inline(text)
    assert f is not None and (f.address, f.name, f.text, f.note) == ("amelie@client.example", "Amélie", "Bonjour", "Voir ci-dessous.")


def test_apple_mail_quoted_forward_is_unquoted():
    text = "FYI\n\nBegin forwarded message:\n\n> From: A <a@b.example>\n> Subject: x\n>\n> Hello there"
    f = forwarded.inline(text)
    assert f is not None and f.address == "a@b.example" and f.text.strip() == "Hello there"


def test_no_forward():
    assert forwarded.inline("Hi,\nFrom: the team\nregards") is None
    assert forwarded.inline("") is None


def fwd_draft(config, body: str):
    d = make_draft(f"From: bob@example.com\nSubject: [fwd] x\n\n{body}", config)
    d.staff, d.forward, d.text = True, True, body
    d.flags.add("fwd")
    return d


def test_rule_sets_the_requester(config):
    d = fwd_draft(config, "note\n\n---------- Forwarded message ---------\nFrom: C <c@cust.org>\n\nhelp me")
    rule.apply(d)
    assert (d.requester, d.requester_name, d.note, d.text) == ("c@cust.org", "C", "note", "help me") and not d.refused


@pytest.mark.parametrize("who", ["alice@example.com", "support@example.com"])
def test_rule_refuses_staff_and_own_addresses(config, who):
    d = fwd_draft(config, f"note\n\n---------- Forwarded message ---------\nFrom: X <{who}>\n\nhi")
    rule.apply(d)
    assert d.requester == "" and d.refused and "fwd" not in d.flags and "refused" in d.flags


def test_an_inline_forward_wins_over_an_attached_mail(config):
    """Gmail keeps a forwarded mail's attachments: a message/rfc822 the
    customer attached names whoever they chose, not the customer whom the
    staff member forwarded (and so vouched for)."""
    raw = (
        "From: bob@example.com\nSubject: [fwd] x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nnote\n\n---------- Forwarded message ---------\nFrom: Mallory <mallory@evil.example>\n\nsee attached\n"
        "--b\nContent-Type: message/rfc822\n\nFrom: Victim <victim@elsewhere.example>\nSubject: hi\n\nvictim's words\n--b--\n"
    )
    d = make_draft(raw, config)
    d.staff, d.forward = True, True
    d.text = "note\n\n---------- Forwarded message ---------\nFrom: Mallory <mallory@evil.example>\n\nsee attached"
    rule.apply(d)
    assert d.requester == "mallory@evil.example" and d.note == "note"
    # Forwarded as an attachment only (no inline forward): the attached mail's sender.
    assert forwarded.find(d.parsed.message, "just the note").address == "victim@elsewhere.example"
