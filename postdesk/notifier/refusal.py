"""The refusal: one short private mail to a staff member whose command was not done.

Rule "commands" (``postdesk.filter.rules.commands``) lists what it could
not honour, the store keeps that list as a private note on the ticket and
queues an outbox row of kind "refusal" for the staff member; this module
decides whether it goes (``decide``) and writes its text (``text``).  It
goes only to the sender of the mail, who was verified staff when the mail
came in (never to a customer: that would be backscatter), and it is
automatic mail like the others (RFC 3834 ``Auto-Submitted: auto-replied``,
set by ``compose``).  The quoted commands were cleaned and bounded by the
filter (``postdesk.filter.commands.bounded``) and by ``compose.clean`` again
here: no controls, no line breaks, no bidi overrides.
"""

from __future__ import annotations

from postdesk.config import Config
from postdesk.mail import REPLY_MARKER
from postdesk.outbox_rows import Claimed, Job, Skip

MAX_LINES = 20  # refused commands listed; the note on the ticket keeps them all


def decide(c: Claimed, config: Config) -> Job | Skip:
    from postdesk.notifier.policy import _job, _skip, entry

    to = c.recipient.address
    if not to or config.is_system_address(to):
        return _skip(c, "own address")  # would come back as a ticket
    if c.action is None:
        return _skip(c, "action missing")
    return _job(c, [entry(c.action)], up_to_action_id=c.action.id)


def text(job: Job, config: Config, clean) -> str:
    """The body: which commands were not done and why, and the table's place."""
    tag = f"[{config.organization.tag}{job.ticket}]"
    lines = [REPLY_MARKER, "", f"Your mail on {tag} was recorded, but not every command in it was done:", ""]
    for entry in job.entries:
        for line in entry.text.splitlines()[1 : MAX_LINES + 1]:
            lines.append("  " + clean(line.strip())[:300])
    lines += [
        "",
        "Commands go in the subject or on a line of their own: [pvt] [closed] [open]",
        "[pending] [take] [assign ADDRESS] [merge #N] [fwd]. Reply to this mail with",
        f"the command corrected to apply it to {tag}.",
        "",
        "-- ",
        clean(config.organization.name),
        "",
    ]
    return "\n".join(lines)
