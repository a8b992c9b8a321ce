"""rules/commands.py and the one command table (postdesk/filter/commands.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from filter_support import MemoryKnown, make_draft

from postdesk.filter import commands as cmds
from postdesk.filter.decision import TicketInfo
from postdesk.filter.rules import commands

DOCS = Path(__file__).resolve().parent.parent / "docs" / "commands.md"


def names(subject: str, body: str = "") -> list[tuple[str, str]]:
    return [(f.name, f.arg) for f in cmds.find(subject, body)]


@pytest.mark.parametrize(
    "subject, body, found",
    [
        ("[pvt] note", "", [("pvt", "")]),
        ("x", "internal [PVT] remark", [("pvt", "")]),  # [pvt] and [closed]: anywhere in the new text
        ("[Closed] done", "", [("closed", "")]),
        ("x", "Fixed.\n[closed]", [("closed", "")]),
        ("[pvt][closed]", "", [("pvt", ""), ("closed", "")]),
        ("private note", "closed the case", []),
        ("[ pvt ]", "", [("pvt", "")]),
        ("Re: [#1042] [pending] waiting", "", [("pending", "")]),
        ("x", "the [open] issue is fixed", []),  # prose: not on a line of its own
        ("x", "Hi,\n  [open]  \nthanks", [("open", "")]),
        ("x", "[take] [pending]", [("take", ""), ("pending", "")]),
        ("x", "[assign bob@example.com]", [("assign", "bob@example.com")]),
        ("[merge #1001] dup", "", [("merge", "#1001")]),
        ("[EXTERNAL] Re: [#5] hello", "", []),  # subject tags that are no command
        ("x", "[frobnicate]", [("frobnicate", "")]),  # unknown: only on a line of its own
        ("x", "see [frobnicate] here", []),
        ("[pvt] x", "[pvt]", [("pvt", "")]),  # given twice, counts once
    ],
)
def test_find(subject, body, found):
    assert names(subject, body) == found


def test_docs_table_is_the_parsers_table():
    assert cmds.markdown_table() in DOCS.read_text(encoding="utf-8")
    for c in cmds.COMMANDS:
        assert c.usage in DOCS.read_text(encoding="utf-8")


def test_refused_text_is_cleaned_and_bounded():
    f = cmds.find("", "[" + "x" * 25 + " \u202eevil\x1b(B" + "y" * 300 + "]")
    assert len(f) == 1
    assert len(f[0].raw) <= cmds.MAX_REPORTED and "\u202e" not in f[0].raw and "\x1b" not in f[0].raw


def test_long_hostile_line_is_linear():
    import time

    start = time.monotonic()
    cmds.find("[" * 50000, ("[a " * 30000) + "\n" + "[" * 100000)
    assert time.monotonic() - start < 2


def staff_draft(config, subject: str, body: str = "x", known=None, ticket: int | None = 1001):
    d = make_draft(f"From: bob@example.com\nSubject: {subject}\n\n{body}", config, known=known or known_tickets())
    d.staff = True
    d.ticket = ticket
    d.new_text = body
    return d


def known_tickets(*extra: TicketInfo) -> MemoryKnown:
    base = [TicketInfo(1001, "open", "c@cust.org", frozenset({"c@cust.org"})), TicketInfo(1002, "open", "d@cust.org", frozenset({"d@cust.org"}))]
    return MemoryKnown(tickets=[*base, *extra])


def test_only_staff_commands_count(config):
    d = make_draft("From: c@cust.org\nSubject: [pvt] x [closed] [take]\n\n[frobnicate]", config)
    d.new_text = "[frobnicate]"
    commands.apply(d)
    assert d.public and not d.close and not d.flags and d.status == "" and d.owner is None
    assert d.refused == []  # nothing is reported to a non-staff sender (backscatter)


def test_pvt_closed(config):
    d = staff_draft(config, "[pvt] x [closed]")
    commands.apply(d)
    assert not d.public and d.close and d.status == "closed" and {"pvt", "closed"} <= d.flags


@pytest.mark.parametrize("command, status", [("[open]", "open"), ("[pending]", "pending"), ("[closed]", "closed")])
def test_status(config, command, status):
    d = staff_draft(config, "x", f"Done.\n{command}")
    commands.apply(d)
    assert d.status == status and not d.refused


def test_conflicting_status_is_refused(config):
    d = staff_draft(config, "[pending] x", "[closed]")
    commands.apply(d)
    assert d.status == "pending" and len(d.refused) == 1 and "conflicts" in d.refused[0]


def test_take_and_assign(config):
    d = staff_draft(config, "[take]")
    commands.apply(d)
    assert d.owner == "bob@example.com"
    d = staff_draft(config, "x", "[assign <Alice@Example.com>]")
    commands.apply(d)
    assert d.owner == "alice@example.com"
    d = staff_draft(config, "x", "[assign none]")
    commands.apply(d)
    assert d.owner == ""


@pytest.mark.parametrize("arg", ["mallory@evil.example", "support@example.com", "nobody-at-all"])
def test_assign_only_to_staff(config, arg):
    d = staff_draft(config, "x", f"[assign {arg}]")
    commands.apply(d)
    assert d.owner is None and len(d.refused) == 1 and "refused" in d.flags


def test_merge(config):
    d = staff_draft(config, "[merge #1002]")
    commands.apply(d)
    assert d.merge_into == 1002 and not d.refused


def test_merge_follows_the_chain(config):
    known = known_tickets(TicketInfo(1003, "closed", "e@cust.org", frozenset(), merged_into=1002))
    d = staff_draft(config, "[merge #1003]", known=known)
    commands.apply(d)
    assert d.merge_into == 1002


@pytest.mark.parametrize(
    "subject, why",
    [
        ("[merge #1001]", "itself"),
        ("[merge #9999]", "no ticket"),
        ("[merge soon]", "[merge #N]"),
        ("[merge #1004]", "merged into this one"),
    ],
)
def test_merge_refused(config, subject, why):
    known = known_tickets(TicketInfo(1004, "closed", "e@cust.org", frozenset(), merged_into=1001))
    d = staff_draft(config, subject, known=known)
    commands.apply(d)
    assert d.merge_into is None and why in d.refused[0]


def test_merge_on_a_new_ticket_is_refused(config):
    d = staff_draft(config, "[merge #1002]", ticket=None)
    commands.apply(d)
    assert d.merge_into is None and "new ticket" in d.refused[0]


def test_unknown_and_argument_refused(config):
    d = staff_draft(config, "x", "[frobnicate]\n[pvt now]")
    commands.apply(d)
    assert [r.split(":")[0] for r in d.refused] == ["[frobnicate]", "[pvt now]"]


def test_fwd(config):
    d = staff_draft(config, "Fwd: [fwd] Help", ticket=None)
    commands.apply(d)
    assert d.forward and "fwd" in d.flags
    d = staff_draft(config, "Fwd: [fwd] Help")
    commands.apply(d)
    assert not d.forward and "opens a new ticket" in d.refused[0]


def test_commands_leave_a_new_tickets_subject(config):
    d = staff_draft(config, "Fwd: [fwd] [pending] Invoice 7", ticket=None)
    commands.apply(d)
    assert d.finish().subject == "Invoice 7"


def test_a_customers_commands_leave_the_subject_too(config):
    # Else every alert's subject, and so every staff reply's, would carry them.
    d = make_draft("From: c@cust.org\nSubject: [merge #1] [closed] Help [EXTERNAL]\n\nx", config)
    commands.apply(d)
    assert d.finish().subject == "Help [EXTERNAL]" and d.merge_into is None


def test_a_forwarded_customers_brackets_are_not_staff_commands(config):
    """[fwd]: the customer's own "[closed]" or "[assign ...]" inside the
    forwarded mail commands nothing; the staff member's note still does."""
    body = (
        "Please look at this one.\n[pvt]\n\n---------- Forwarded message ---------\nFrom: C <c@cust.org>\n\n"
        "My order is late.\n[closed]\n[assign carol@example.com]\n[frobnicate]"
    )
    d = staff_draft(config, "[fwd] Order", body, ticket=None)
    d.text = body
    commands.apply(d)
    assert d.forward and not d.public  # the note's [fwd] and [pvt]
    assert not d.close and d.status == "" and d.owner is None and d.refused == []
    # Without [fwd] the same lines are the staff member's own.
    d = staff_draft(config, "Order", "My order is late.\n[closed]", ticket=1001)
    commands.apply(d)
    assert d.close and d.status == "closed"


def test_an_attached_forward_reads_commands_from_the_staff_members_new_text(config):
    """A forward attached as a message: the staff member's quoted history
    (a customer's "[closed]" in it) commands nothing; their new text does."""
    raw = (
        "From: bob@example.com\nSubject: [fwd] Order\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nPlease handle.\n[pvt]\n\nOn Mon, C wrote:\n> all good now\n> [closed]\n"
        "--b\nContent-Type: message/rfc822\n\nFrom: C <c@cust.org>\nSubject: Order\n\nMy order is late.\n--b--\n"
    )
    d = make_draft(raw, config, known=known_tickets())
    d.staff, d.ticket = True, None
    d.text = "Please handle.\n[pvt]\n\nOn Mon, C wrote:\n> all good now\n> [closed]"
    d.new_text = "Please handle.\n[pvt]"
    commands.apply(d)
    assert d.forward and not d.public  # [fwd] and [pvt]
    assert not d.close and d.status == ""
