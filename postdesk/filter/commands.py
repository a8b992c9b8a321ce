"""Step: the commands staff put in a mail, and the one table of them.

``COMMANDS`` is the table docs/commands.md shows (a test renders it with
``markdown_table`` and compares): each command, its argument, who may use it
and what it does.  ``find`` reads them from a mail:

- in the subject, anywhere, any case: only the names of the table count
  there, since subjects carry other bracketed words (``[EXTERNAL]``, a
  mailing list's ``[users]``) that are nobody's command;
- in the new text of the body (quoted history never counts: a quoted
  ``[closed]`` must not close the ticket again): ``[pvt]`` and ``[closed]``
  anywhere, as the hosted desk we reproduce documents them; every other
  command on a line of its own (one or more bracketed commands and nothing
  else), so that prose such as "the [open] issue" is not a command.  On such
  a line a bracketed word the table does not know is reported back as
  unknown.

Whether a command counts (verified staff only) and what it changes is rule
"commands" (``postdesk.filter.rules.commands``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_REPORTED = 60  # characters of a refused command quoted back in the refusal mail
MAX_COMMANDS = 20  # commands read from one mail; a mail of thousands is no instruction


@dataclass(frozen=True)
class Command:
    """One row of the table."""

    name: str
    arg: str  # "" (none), "ADDRESS", "#N"
    who: str
    does: str

    @property
    def usage(self) -> str:
        return f"[{self.name} {self.arg}]" if self.arg else f"[{self.name}]"


STAFF = "verified staff"

COMMANDS: tuple[Command, ...] = (
    Command("pvt", "", STAFF, "the mail is a private action: no customer hears of it"),
    Command("closed", "", STAFF, "close the ticket (status mail per `status_change_emails`)"),
    Command("open", "", STAFF, "set the ticket open again"),
    Command("pending", "", STAFF, "set the ticket pending: waiting for the customer (a customer reply sets it open)"),
    Command("take", "", STAFF, "the sender becomes the ticket's owner"),
    Command("assign", "ADDRESS", STAFF, "make ADDRESS (an address `[organization] staff` matches) the owner; `[assign none]`: nobody"),
    Command("merge", "#N", STAFF, "merge this ticket into ticket N (its actions, people, attachments and Message-IDs); this one is closed"),
    Command("fwd", "", STAFF, "subject only, on a mail opening a ticket: the forwarded customer is the requester and gets the acknowledgement; the sender's own text is a private note"),
)
BY_NAME = {c.name: c for c in COMMANDS}
# Anywhere in the new text, not only on a line of their own (see the docstring).
ANYWHERE = frozenset({"pvt", "closed"})


@dataclass(frozen=True)
class Found:
    """A command as written: its name (lower-cased), argument, and text (cleaned, bounded)."""

    name: str
    arg: str
    raw: str

    @property
    def known(self) -> bool:
        return self.name in BY_NAME


# "[name]" or "[name argument]"; a space or tab inside the brackets is
# allowed ("[ pvt ]", as people type it).  Bounded so a hostile line stays linear.
_BRACKET = re.compile(r"\[[ \t]?([A-Za-z][A-Za-z-]{0,30})(?:[ \t]+([^\]\[\r\n]{1,330}?))?[ \t]?\]")
_OWN_LINE = re.compile(r"^[ \t]*(?:\[[^\]\[\r\n]{1,360}\][ \t]*)+$")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def bounded(text: str) -> str:
    """``text`` fit to quote back to its sender: no controls or bidi
    overrides, no line breaks, at most ``MAX_REPORTED`` characters."""
    text = _CONTROLS.sub(" ", text or "").strip()
    return text if len(text) <= MAX_REPORTED else text[: MAX_REPORTED - 3] + "..."


def _found(m: re.Match[str]) -> Found:
    return Found(m.group(1).lower(), (m.group(2) or "").strip(), bounded(m.group(0)))


def find(subject: str, new_text: str) -> list[Found]:
    """The commands of a mail, in order (subject first), at most ``MAX_COMMANDS``;
    a command given twice counts once."""
    out: list[Found] = []
    seen: set[tuple[str, str]] = set()

    def add(f: Found) -> None:
        key = (f.name, f.arg.lower())
        if key not in seen and len(out) < MAX_COMMANDS:
            seen.add(key)
            out.append(f)

    for m in _BRACKET.finditer(subject or ""):
        f = _found(m)
        if f.known:
            add(f)
    for line in (new_text or "").splitlines():
        if "[" not in line:
            continue
        own_line = bool(_OWN_LINE.match(line))
        for m in _BRACKET.finditer(line):
            f = _found(m)
            if own_line or (f.name in ANYWHERE and not f.arg):
                add(f)
    return out


def strip_commands(subject: str) -> str:
    """``subject`` without the commands of the table in it."""
    return _BRACKET.sub(lambda m: " " if m.group(1).lower() in BY_NAME else m.group(0), subject or "")


def markdown_table() -> str:
    """The table of docs/commands.md, from ``COMMANDS``."""
    rows = ["| command | who may use it | what it does |", "|---|---|---|"]
    rows += [f"| `{c.usage}` | {c.who} | {c.does} |" for c in COMMANDS]
    return "\n".join(rows)


__all__ = ["ANYWHERE", "BY_NAME", "COMMANDS", "Command", "Found", "bounded", "find", "markdown_table", "strip_commands"]
