"""Rule "duplicate": a message recorded before is recorded once.

The identity of a message is its key (the Message-ID, or without one the
SHA-256 of the raw bytes) together with a digest of who sent what (author,
subject, body, To/Cc, and whether it failed or passed authentication;
``draft.content_digest``).
A redelivery (the sender's MTA retrying after a lost 250, Postfix retrying
the pipe) matches both and records nothing.  A forged mail that reuses a
genuine Message-ID differs in author, content or verdict, so it cannot make
the genuine mail a duplicate, whichever arrives first.
"""

from __future__ import annotations

from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft


def apply(d: Draft) -> Decision | None:
    h = d.headers
    if not d.known.message_seen(h.message_key, d.digest):
        return None
    ticket = d.known.ticket_for_message_ids([h.message_id]) if h.message_id else None
    return d.stop(Kind.DUPLICATE, "duplicate", ticket=ticket)
