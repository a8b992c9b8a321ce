"""Rule "thread": which ticket a message follows up.

A ``[#N]`` tag of an existing ticket anywhere in the subject; else
In-Reply-To/References naming a Message-ID the store knows, or one of our
own Message-IDs whose HMAC verifies (the matching is in
``postdesk.filter.thread``).  No ticket: the message opens one.  A tag
naming no ticket here is flagged ``unknown-tag``.
"""

from __future__ import annotations

from postdesk.filter import thread as threadmod
from postdesk.filter.decision import Decision
from postdesk.filter.draft import Draft


def apply(d: Draft) -> Decision | None:
    th = threadmod.thread(d.headers.original_subject, d.headers.references, d.known, d.config.organization.tag)
    if th.unknown_tag:
        d.flags.add("unknown-tag")
    d.ticket, d.ours = th.ticket, th.ours
    return None
