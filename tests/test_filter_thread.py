"""thread.py: find_tag, strip_subject, threading by tag / references / HMAC id."""

from __future__ import annotations

import pytest
from filter_support import MemoryKnown, ticket_info

from postdesk.filter import find_tag
from postdesk.filter.thread import strip_subject, thread
from postdesk.msgid import make_message_id

SECRET = b"s" * 32


def fake_known(tickets=(), ids=None, seen=()) -> MemoryKnown:
    return MemoryKnown([ticket_info(n, "c@cust.org") for n in tickets], ids, seen, SECRET)


@pytest.mark.parametrize(
    "subject, expected",
    [
        ("[#1042] Printer", 1042),
        ("Re: [#1042] Printer", 1042),
        ("RE: AW: Fwd: [#1042] Printer", 1042),
        ("Printer broken [#1042]", 1042),
        ("Printer [#1042] broken", 1042),
        ("[# 1042] x", 1042),
        ("No tag here", None),
        ("[#] empty", None),
        ("[#abc] letters", None),
        ("#1042 without brackets", None),
        ("[#0] zero", None),
        ("[#99999999999] too big", None),
        ("", None),
    ],
)
def test_find_tag_default(subject, expected):
    assert find_tag(subject, "#") == expected


def test_find_tag_other_prefix_any_case():
    assert find_tag("Re: [TKT-77] help", "TKT-") == 77
    assert find_tag("Re: [tkt-77] help", "TKT-") == 77
    assert find_tag("Re: [#77] help", "TKT-") is None
    assert find_tag("[ACME#5] x", "ACME#") == 5
    assert find_tag("[acme#5] x", "ACME#") == 5
    assert find_tag("[a.c5] x", "a.c") == 5 and find_tag("[abc5] x", "a.c") is None  # no regex injection


@pytest.mark.parametrize(
    "subject, expected",
    [
        ("Re: [#1042] Printer broken", "Printer broken"),
        ("RE: AW: WG: SV: VS: Antw: TR: RIF: Fwd: FW: Printer", "Printer"),
        ("re: aw: fwd: printer", "printer"),
        ("Re[2]: Printer", "Printer"),
        ("Re: Printer [#1042]", "Printer"),
        ("[#1042] Re: Printer", "Printer"),
        ("Printer: it's broken", "Printer: it's broken"),
        ("Reorder toner", "Reorder toner"),
        ("", ""),
    ],
)
def test_strip_subject(subject, expected):
    assert strip_subject(subject, "#") == expected


def test_strip_subject_hostile_gives_an_answer():
    """Speed: bench/filter.py."""
    assert strip_subject("Re:" + " " * 100_000 + "x", "#") == "x"
    assert isinstance(strip_subject("Re: " * 50_000, "#"), str)
    assert strip_subject("[" * 100_000, "#") == "[" * 100_000
    assert find_tag("[#" + " " * 100_000, "#") is None
    assert find_tag("[# " * 50_000, "#") is None


def test_thread_by_tag():
    t = thread("Re: [#1042] x", (), fake_known(tickets=[1042]), "#")
    assert (t.ticket, t.via, t.unknown_tag) == (1042, "tag", False)


def test_thread_unknown_tag():
    t = thread("Re: [#9999] x", (), fake_known(tickets=[1042]), "#")
    assert (t.ticket, t.tag, t.unknown_tag) == (None, 9999, True)


def test_thread_by_references_known_to_store():
    k = fake_known(tickets=[1042], ids={"cust-1@cust.org": 1042})
    t = thread("Re: x", ("other@x", "cust-1@cust.org"), k, "#")
    assert (t.ticket, t.via) == (1042, "references")


def test_thread_by_hmac_message_id():
    mid = make_message_id(1042, SECRET, "example.com")
    t = thread("Re: x", (mid,), fake_known(tickets=[1042]), "#")
    assert (t.ticket, t.via) == (1042, "hmac")
    assert 1042 in t.ours


def test_thread_hmac_for_missing_ticket_is_new():
    mid = make_message_id(5, SECRET, "example.com")
    assert thread("Re: x", (mid,), fake_known(tickets=[1042]), "#").ticket is None


def test_thread_forged_hmac_ignored():
    mid = make_message_id(1042, b"another secret", "example.com")
    assert thread("Re: x", (mid,), fake_known(tickets=[1042]), "#").ticket is None


def test_tag_wins_over_references():
    k = fake_known(tickets=[1042, 1043], ids={"m@x": 1043})
    assert thread("[#1042] x", ("m@x",), k, "#").ticket == 1042


def test_first_existing_tag_wins_and_unknown_ones_are_flagged():
    t = thread("[#77] Re: [#1042] x", (), fake_known(tickets=[1042]), "#")
    assert (t.ticket, t.unknown_tag) == (1042, True)
    t = thread("[#1042] x", (), fake_known(tickets=[1042]), "#")
    assert t.unknown_tag is False
    assert find_tag("[#77] Re: [#1042] x", "#") == 77  # find_tag itself: the first tag


def test_unknown_tag_with_hmac_reference_still_threads():
    mid = make_message_id(1042, SECRET, "example.com")
    t = thread("[#77] Re: x", (mid,), fake_known(tickets=[1042]), "#")
    assert (t.ticket, t.unknown_tag, t.via) == (1042, True, "hmac")
