"""Step: the commands staff put in a mail, ``[pvt]`` and ``[closed]``.

Subject or body, any case (the hosted desk we reproduce documents both
places).  In the body only the new text counts: a quoted earlier mail that
said ``[closed]`` must not close the ticket again.  Whether a command counts
at all (trusted staff only, docs/filter.md rules 7 and 8) is for the pipeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PVT = re.compile(r"\[[ \t]?pvt[ \t]?\]", re.IGNORECASE)
_CLOSED = re.compile(r"\[[ \t]?closed[ \t]?\]", re.IGNORECASE)


@dataclass(frozen=True)
class Commands:
    pvt: bool = False
    closed: bool = False


def find_commands(subject: str, body: str) -> Commands:
    """Which of [pvt] / [closed] appear in the subject or the (new) body text."""
    text = f"{subject or ''}\n{body or ''}"
    return Commands(pvt=bool(_PVT.search(text)), closed=bool(_CLOSED.search(text)))
