"""rules/language.py and postdesk/filter/language.py: a new ticket's language."""

from __future__ import annotations

import pytest
from filter_support import MemoryKnown, make_draft, ticket_info

from postdesk.filter import language
from postdesk.filter.rules import content
from postdesk.filter.rules import language as rule


@pytest.mark.parametrize(
    "text, lang",
    [
        ("Hallo, mein Drucker funktioniert nicht mehr. Können Sie mir bitte helfen?", "de"),
        ("Hi, my printer stopped working. Can you help? Thanks", "en"),
        ("Bonjour, mon imprimante ne marche plus. Pouvez-vous m'aider ? Merci", "fr"),
        ("Hola, mi impresora no funciona. Gracias por la ayuda", "es"),
        ("ok", ""),  # too little to tell
        ("Danke", ""),
        ("", ""),
    ],
)
def test_guess(text, lang):
    assert language.guess(text) == lang


def _draft(config, headers: str, body: str, known=None):
    d = make_draft(f"From: c@cust.org\nTo: support@example.com\nSubject: x\n{headers}\n{body}", config, known=known)
    content.apply(d)
    rule.apply(d)
    return d


def test_content_language_header_wins_over_the_words(config):
    assert _draft(config, "Content-Language: de-DE\n", "Hi, my printer stopped working. Can you help?").language == "de-de"


def test_words_when_no_header(config):
    assert _draft(config, "", "Hallo, der Drucker ist kaputt und ich kann nicht drucken.").language == "de"


def test_garbage_header_is_ignored(config):
    assert _draft(config, "Content-Language: <script>\n", "Hi, the printer is broken and I can not print.").language == "en"


def test_only_a_new_ticket_gets_a_language(config):
    known = MemoryKnown([ticket_info(7, "c@cust.org")])
    d = make_draft("From: c@cust.org\nTo: support@example.com\nSubject: Re: [#7] x\n\nHallo, der Drucker ist kaputt und ich kann nicht drucken.", config, known=known)
    from postdesk.filter.rules import thread

    thread.apply(d)
    content.apply(d)
    rule.apply(d)
    assert d.ticket == 7 and d.language == ""
