"""The refusal: one short private mail to a staff member whose command was not done.

Rule "commands" (``postdesk.filter.rules.commands``) lists what it could
not honour, the store keeps that list as a private note on the ticket and
queues an outbox row of kind "refusal" for the staff member; this module
decides whether it goes (``decide``); its words are the ``refusal``
templates (``postdesk/templates/LANG/refusal.*``, in the staff's language).  It
goes only to the sender of the mail, who was verified staff when the mail
came in (never to a customer: that would be backscatter), and it is
automatic mail like the others (RFC 3834 ``Auto-Submitted: auto-replied``,
set by ``compose``).  The quoted commands were cleaned and bounded by the
filter (``postdesk.filter.commands.bounded``) and by ``compose.clean`` again
(``compose.context``): no controls, no line breaks, no bidi overrides.
"""

from __future__ import annotations

from postdesk.config import Config
from postdesk.outbox_rows import Claimed, Job, Skip

MAX_LINES = 20  # refused commands listed; the note on the ticket keeps them all


def decide(c: Claimed, config: Config) -> Job | Skip:
    from postdesk.notifier.policy import _job, _skip, entry

    to = c.recipient.address
    if not to or config.is_system_address(to):
        return _skip(c, "own address")  # would come back as a ticket
    if c.action is None:
        return _skip(c, "action missing")
    # RFC 3834 section 3.1.5: refer to the mail this answers, the staff
    # member's newest message on the ticket (the one whose commands were refused).
    parent = c.participant.last_message_id if c.participant else ""
    return _job(c, [entry(c.action, ticket=c.ticket)], in_reply_to=parent, up_to_action_id=c.action.id)
