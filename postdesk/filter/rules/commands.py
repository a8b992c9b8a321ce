"""Rule "commands": what verified staff ask for in their mail.

The table of commands and their matching are ``postdesk.filter.commands``
(docs/commands.md).  Only staff proven by rule "trust" give commands; from
anyone else they are text, and nothing is said about them (a reply to a
forged or unproven sender would be backscatter).  A command staff gave that
cannot be honoured (unknown, a bad argument, a merge into nowhere) is added
to ``Decision.refused``: the store reports those back to the sender in one
short private mail (outbox kind "refusal"), and the rest of the mail is
recorded as usual.
"""

from __future__ import annotations

import re

from postdesk.filter import commands as cmds
from postdesk.filter import headers as hdr
from postdesk.filter import thread as threadmod
from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft
from postdesk.filter.rules import forwarded as forwarded_rule

_NUMBER = re.compile(r"^\d{1,10}$")


def ticket_argument(arg: str, tag: str) -> int | None:
    """The N of ``[merge #N]``: "#N", "N", or with the configured tag ("TKT-N")."""
    arg = arg.strip()
    for prefix in (tag, "#"):
        if prefix and arg.lower().startswith(prefix.lower()):
            arg = arg[len(prefix) :].strip()
            break
    return int(arg) if _NUMBER.match(arg) and 0 < int(arg) <= threadmod.MAX_TICKET else None


def address_argument(arg: str) -> str:
    """The address of ``[assign ADDRESS]`` as mail clients write it
    (``<a@b>``, ``mailto:a@b``); "" when it is none."""
    arg = arg.strip().strip("<>").strip()
    if arg.lower().startswith("mailto:"):
        arg = arg[7:]
    found = hdr.clean_address(arg)
    return found if "@" in found else ""


def _refuse(d: Draft, f: cmds.Found, why: str) -> None:
    d.refused.append(f"{f.raw}: {why}")


def _status(d: Draft, f: cmds.Found, status: str) -> None:
    if d.status and d.status != status:
        _refuse(d, f, f"conflicts with the status {d.status} asked for before it")
        return
    d.status = status


def _merge(d: Draft, f: cmds.Found) -> None:
    if d.ticket is None:
        _refuse(d, f, "this mail opens a new ticket; reply on the ticket to merge")
        return
    into = ticket_argument(f.arg, d.config.organization.tag)
    if into is None:
        _refuse(d, f, "give the ticket to merge into as [merge #N]")
        return
    if d.known.ticket(into) is None:
        _refuse(d, f, f"there is no ticket {into}")
        return
    final = threadmod.resolve(d.known, into)
    if into == d.ticket or final == d.ticket:
        _refuse(d, f, "a ticket cannot be merged into itself" if into == d.ticket else f"ticket {into} was merged into this one")
        return
    d.merge_into = final


def _commands(d: Draft) -> list[cmds.Found]:
    """The staff member's commands.  With [fwd], the forwarded customer's
    own words are not the staff member's: only the note above an inline
    forward (and the subject) is read, so a customer who wrote "[closed]"
    or "[assign ...]" in the mail being forwarded commands nothing.  A
    forward attached as a message is not in the text at all: the staff
    member's new text (quoted history cut, as for any mail) is theirs."""
    found = cmds.find(d.headers.original_subject, d.new_text)
    if any(f.name == "fwd" for f in found):
        forward = forwarded_rule.read(d.parsed, d.text)
        if forward is not None and forward.style == "inline":
            found = cmds.find(d.headers.original_subject, forward.note)
    return found


def apply(d: Draft) -> Decision | None:
    if not d.staff:
        return None
    for f in _commands(d):
        command = cmds.BY_NAME.get(f.name)
        if command is None:
            _refuse(d, f, "unknown command")
        elif f.arg and not command.arg:
            _refuse(d, f, f"takes no argument (write {command.usage})")
        elif f.name == "pvt":
            d.public = False
            d.flags.add("pvt")
        elif f.name == "closed":
            d.close = True
            d.flags.add("closed")
            _status(d, f, "closed")
        elif f.name in ("open", "pending"):
            _status(d, f, f.name)
        elif f.name == "take":
            d.owner = d.author
        elif f.name == "assign":
            if f.arg.strip().lower() in ("none", "nobody"):
                d.owner = ""
                continue
            address = address_argument(f.arg)
            if not address:
                _refuse(d, f, "give an address: [assign name@example.com] or [assign none]")
            elif d.config.is_own_address(address) or not d.config.matches_staff(address):
                _refuse(d, f, f"{cmds.bounded(address)} is not a staff address")
            else:
                d.owner = address
        elif f.name == "merge":
            _merge(d, f)
        elif f.name == "fwd":
            if d.kind is Kind.FOLLOWUP:
                _refuse(d, f, "forward the customer's mail without a ticket tag: [fwd] opens a new ticket")
            else:
                d.forward = True
                d.flags.add("fwd")
    if d.refused:
        d.flags.add("refused")
    return None
