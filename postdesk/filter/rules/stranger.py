"""Rule "stranger": someone new on a ticket stays private until staff decide.

A follow-up by someone who is neither staff nor a participant of the ticket
is a private action flagged ``stranger``, and adds nobody.  One thing makes
a newcomer no stranger: answering a mail we sent *to them* about this
ticket (a Message-ID of ours in In-Reply-To/References whose outbox
recipient is the author).  Holding one of our Message-IDs is not enough: an
acknowledgement or update forwarded to a colleague carries them too.  So a
customer's colleague replying to a forwarded update is a stranger: the
reply is kept privately on the ticket, the team is alerted as for any
customer reply, and staff add the colleague (or make the action public) if
they belong.

Bounces are no one joining (and private anyway), so they are not flagged.
"""

from __future__ import annotations

from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft


def answers_our_mail_to_author(d: Draft) -> bool:
    """A reference names mail we sent about this ticket to the author."""
    if not d.headers.references:
        return False
    sent = d.known.sent_mail(d.headers.references)
    return any(recipient == d.author and number == d.ticket for recipient, number in sent.values())


def apply(d: Draft) -> Decision | None:
    if d.kind is not Kind.FOLLOWUP or d.staff or "bounce" in d.flags:
        return None
    info = d.known.ticket(d.ticket) if d.ticket is not None else None
    participants = info.participants if info else frozenset()
    if d.author in participants or answers_our_mail_to_author(d):
        return None
    d.public = False
    d.flags.add("stranger")
    return None
