"""Rule "new_tickets": how many tickets one sender may open.

``[limits] new_tickets_per_sender`` per ``new_ticket_window`` seconds (0:
no limit).  A sender over it gets a decision the store does not record
(``Kind.DEFER``), which both adapters answer with a temporary failure
(``Outcome.DEFERRED``: 451 4.7.1 at SMTP time, exit 75 from pipe(8)): a
real sender's MTA retries later and nothing is lost; a flood is held at
the door instead of filling the desk.

Staff are not limited.  A forged mail (rule "identity") counts against the
quota only of other forged mail, so a forger cannot use up a real
customer's quota; the forger's own flood is still limited.  And an
authenticated mail counts only tickets opened by authenticated mail: a
forger writing in the name of a domain that publishes nothing (whose mail
is "unverified", not refuted) cannot use up the quota of its real,
authenticated sender either.
"""

from __future__ import annotations

from datetime import timedelta

from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft


def apply(d: Draft) -> Decision | None:
    limit = int(d.config.limits.new_tickets_per_sender)
    if not limit or d.kind is not Kind.NEW or d.staff or d.now is None or not d.author:
        return None
    since = d.now - timedelta(seconds=float(d.config.limits.new_ticket_window))
    opened = d.known.new_tickets_since(d.author, since, include_forged=d.auth.refuted, verified_only=d.auth.verified)
    if opened < limit:
        return None
    return d.stop(Kind.DEFER, f"too many new tickets from {d.author}, try again later", flags=d.flags)
