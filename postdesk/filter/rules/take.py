"""Rule "take": the first public reply of verified staff takes an unowned ticket.

With ``[lifecycle] take_on_reply`` (on by default), the staff member who
first answers a customer publicly becomes the ticket's owner, so later
customer replies alert them (README, "Owners").  A private note does not
take the ticket (helping a colleague is not taking over), nor does a reply
on a ticket someone already owns, nor an owner a staff command set in the
same message (``[take]``, ``[assign ...]``, rule "commands": the command
wins).  Only staff proven by rule "trust" count; an unproven staff address
takes nothing.
"""

from __future__ import annotations

from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft


def apply(d: Draft) -> Decision | None:
    if not (d.staff and d.public and d.kind is Kind.FOLLOWUP and d.owner is None and d.author):
        return None
    if not d.config.lifecycle.take_on_reply or d.ticket is None:
        return None
    info = d.known.ticket(d.ticket)
    if info is not None and not info.owner:
        d.owner = d.author
    return None
