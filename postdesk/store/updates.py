"""Debounced customer updates: the "two quiet minutes" timer.

Each change a customer should hear about (a public action, a status change
when ``status_change_emails`` is on, the ticket made visible, an action
toggled to public) calls ``schedule_update`` inside the transaction that
made the change.  Per ticket and recipient there is at most one *queued*
``update`` row; every change moves its ``due_at`` to now + quiet_period, so
the mail goes only after the ticket has been quiet that long, and then
carries everything since the recipient's ``last_update_action_id`` (the
notifier composes it when due).  A row the notifier has already claimed
(state ``sending``) is left alone and a new queued row is created.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.config import Config
from postdesk.store.models import Outbox, Ticket


def _recipients(ticket: Ticket, config: Config) -> list[str]:
    """Customers on the ticket: non-staff participants, never our own addresses."""
    out = []
    for p in ticket.participants:
        a = p.person.address
        if p.role == "staff" or p.person.staff or config.matches_staff(a) or config.is_own_address(a):
            continue
        out.append(a)
    return sorted(set(out))


def schedule_update(
    session: Session,
    ticket: Ticket,
    now: datetime,
    config: Config,
    exclude: str | Iterable[str] | None = None,
) -> list[Outbox]:
    """Queue (or postpone) the customer update of ``ticket``.

    ``exclude``: addresses that need no row for this change (the author,
    people who received the message directly).  Their already queued rows
    are still postponed: the ticket's timer restarts for everyone.
    Returns the queued rows, due at now + quiet_period.
    """
    if isinstance(exclude, str):
        excluded = {exclude.lower()}
    else:
        excluded = {a.lower() for a in (exclude or ())}
    due = now + timedelta(seconds=float(config.notifier.quiet_period))
    queued = {
        row.recipient: row
        for row in session.scalars(
            select(Outbox).where(Outbox.ticket_id == ticket.id, Outbox.kind == "update", Outbox.state == "queued")
        )
    }
    for row in queued.values():
        row.due_at = due
    if ticket.visible_to_customers:
        for address in _recipients(ticket, config):
            if address in excluded or address in queued:
                continue
            row = Outbox(kind="update", ticket_id=ticket.id, recipient=address, due_at=due, created_at=now)
            session.add(row)
            queued[address] = row
    session.flush()
    return sorted(queued.values(), key=lambda r: r.recipient)


__all__ = ["schedule_update"]
