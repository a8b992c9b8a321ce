"""Rule "team_alert": the team hears of new tickets and of customers' replies.

Staff replying on a ticket do not alert the team about their own mail.
Bounces, auto-replies on a ticket and forged mail were silenced by their
own rules.
"""

from __future__ import annotations

from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft


def apply(d: Draft) -> Decision | None:
    if d.kind is Kind.FOLLOWUP and d.staff:
        d.notify_team = False
    return None
