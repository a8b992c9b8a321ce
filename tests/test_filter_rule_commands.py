"""rules/commands.py and the tags.py matching it uses."""

from __future__ import annotations

import pytest
from filter_support import make_draft

from postdesk.filter.rules import commands
from postdesk.filter.tags import find_commands


@pytest.mark.parametrize(
    "subject, body, pvt, closed",
    [
        ("[pvt] note", "", True, False),
        ("x", "internal [PVT] remark", True, False),
        ("[Closed] done", "", False, True),
        ("x", "Fixed.\n[closed]", False, True),
        ("[pvt][closed]", "", True, True),
        ("private note", "closed the case", False, False),
        ("[ pvt ]", "", True, False),
    ],
)
def test_commands(subject, body, pvt, closed):
    c = find_commands(subject, body)
    assert (c.pvt, c.closed) == (pvt, closed)


def test_only_staff_commands_count(config):
    d = make_draft("From: c@cust.org\nSubject: [pvt] x [closed]\n\nx", config)
    commands.apply(d)
    assert d.public and not d.close and not d.flags
    d.staff = True
    commands.apply(d)
    assert not d.public and d.close and d.flags == {"pvt", "closed"}
