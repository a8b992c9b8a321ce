"""rules/automatic.py alone: RFC 3834 headers, list and bulk headers, and
auto-reply subjects in several languages."""

from __future__ import annotations

import pytest
from filter_support import headers_only as p
from filter_support import make_draft

from postdesk.filter import parse
from postdesk.filter.rules import automatic
from postdesk.filter.rules.automatic import is_auto, is_auto_subject, is_bulk, is_list


@pytest.mark.parametrize(
    "headers",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated; owner-email=x@y",
        "Precedence: junk",
        "Precedence: auto_reply",
        "X-Autoreply: yes",
        "X-Autorespond: Vacation",
    ],
)
def test_auto(headers):
    assert is_auto(parse(p(headers)))


@pytest.mark.parametrize(
    "headers",
    [
        "Auto-Submitted: no",
        "Auto-Submitted: No (human)",
        "Precedence: normal",
        "Subject: x",
        # "don't auto-answer me" is not "a machine wrote this"
        "Precedence: bulk",
        "Precedence: list",
        "X-Auto-Response-Suppress: All",
        "List-Unsubscribe: <mailto:u@x>",
    ],
)
def test_not_auto(headers):
    assert not is_auto(parse(p(headers)))


@pytest.mark.parametrize("headers", ["Precedence: list", "List-Id: <users.lists.example>", "List-Unsubscribe: <mailto:u@x>", "List-Post: <mailto:users@lists.example>"])
def test_list(headers):
    assert is_list(parse(p(headers)))
    assert not is_list(parse(p("Subject: x")))
    assert not is_list(parse(p("Precedence: bulk")))


@pytest.mark.parametrize("headers", ["Precedence: bulk", "X-Auto-Response-Suppress: All", "X-Auto-Response-Suppress: OOF, AutoReply"])
def test_bulk(headers):
    assert is_bulk(parse(p(headers)))
    assert not is_bulk(parse(p("Subject: x")))
    assert not is_bulk(parse(p("Precedence: list")))


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: [#1042] Printer broken",
        "Automatic reply: Re: [#1042] Printer broken",
        "AutoReply: your mail",
        "Abwesenheitsnotiz: [#1042] Drucker",
        "Automatische Antwort: AW: [#1042] Drucker",
        "Réponse automatique : [#1042] Imprimante",
        "Absence: Jean Dupont",
        "Respuesta automática: [#1042] Impresora",
        "Fuera de la oficina: [#1042]",
        "Autosvar: [#1042] Skrivare",
        "Automatisch antwoord: [#1042] Printer",
        "Risposta automatica: [#1042]",
        "out of office",
    ],
)
def test_auto_reply_subjects(subject):
    assert is_auto_subject(subject)


@pytest.mark.parametrize(
    "subject",
    ["Re: [#1042] Out of office tomorrow, printer still broken", "Absence of invoice", "Automatic replies do not work", "Printer", ""],
)
def test_subjects_people_write(subject):
    assert not is_auto_subject(subject)


def test_apply_auto_subject_on_a_ticket_is_private_and_silent(config):
    d = make_draft("From: c@cust.org\nSubject: Automatic reply: [#7] x\n\nI am away.", config)
    d.ticket = 7
    assert automatic.apply(d) is None
    assert d.flags == {"auto"} and not (d.public or d.notify_team or d.send_ack)


def test_apply_list_reply_only_loses_the_ack(config):
    d = make_draft("From: c@cust.org\nList-Id: <l.x>\nSubject: Re: [#7] x\n\nreply", config)
    d.ticket = 7
    automatic.apply(d)
    assert d.flags == {"list"} and d.public and d.notify_team and not d.send_ack


def test_auto_by_behaviour_two_fast_answers_in_a_row(config):
    from datetime import datetime, timedelta

    from filter_support import MemoryKnown

    now = datetime(2026, 1, 1, 12, 0, 0)
    s = timedelta(seconds=1)
    plain = "From: c@cust.org\nSubject: Re: [#7] x\n\nThanks!"

    def decide(sent, authored):
        known = MemoryKnown(sent_at={("c@cust.org", 7): sent}, authored_at={("c@cust.org", 7): authored})
        d = make_draft(plain, config, known=known, now=now)
        d.ticket = 7
        automatic.apply(d)
        return d.flags

    # our update 5 s ago and 200 s before, their previous answer 4 s after that one: a machine
    assert decide([now - 5 * s, now - 200 * s], [now - 196 * s]) == {"auto"}
    # only once fast: a person may
    assert decide([now - 5 * s, now - 200 * s], [now - 100 * s]) == set()
    # slow now
    assert decide([now - 300 * s, now - 600 * s], [now - 596 * s]) == set()
    # first mail we ever sent them
    assert decide([now - 5 * s], []) == set()
