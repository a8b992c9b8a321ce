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

``queue_updates`` does it with two or three Core statements on the
transaction's connection (the per-message path, ``postdesk.store.apply``);
``schedule_update`` is the ORM face of the same thing for the admin
operations and returns the queued rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from postdesk.config import Config
from postdesk.store.models import Outbox, Participant, Person, Ticket

_OUTBOX = Outbox.__table__
_PARTICIPANTS = Participant.__table__
_PEOPLE = Person.__table__

# Postpone every queued update of the ticket, and say whom they are for.
_POSTPONE = (
    _OUTBOX.update()
    .where(
        _OUTBOX.c.ticket_id == bindparam("t_id"),
        _OUTBOX.c.kind == "update",
        _OUTBOX.c.state == "queued",
    )
    .values(due_at=bindparam("due"))
    .returning(_OUTBOX.c.recipient)
)
# (address, role, staff) of everyone on the ticket.
_PARTICIPANTS_OF = (
    select(_PEOPLE.c.address, _PARTICIPANTS.c.role, _PEOPLE.c.staff)
    .join(_PEOPLE, _PEOPLE.c.id == _PARTICIPANTS.c.person_id)
    .where(_PARTICIPANTS.c.ticket_id == bindparam("t_id"))
)
_INSERT = _OUTBOX.insert()


def is_customer(address: str, role: str, staff: bool, config: Config) -> bool:
    """A participant who gets customer updates: not staff (by role, by the
    person's flag or by the configuration), never one of our own addresses."""
    return not (role == "staff" or staff or config.matches_staff(address) or config.is_own_address(address))


def customers(participants: Iterable[tuple[str, str, bool]], config: Config) -> list[str]:
    """Sorted customer addresses among (address, role, staff) participants."""
    return sorted({a for a, role, staff in participants if is_customer(a, role, staff, config)})


def _excluded(exclude: str | Iterable[str] | None) -> set[str]:
    if isinstance(exclude, str):
        return {exclude.lower()}
    return {a.lower() for a in (exclude or ())}


def queue_updates(
    conn: Connection,
    ticket_id: int,
    visible: bool,
    now: datetime,
    config: Config,
    exclude: str | Iterable[str] | None = None,
    participants: Iterable[tuple[str, str, bool]] | None = None,
    postpone: bool = True,
) -> None:
    """``schedule_update`` in Core statements on ``conn``.

    ``participants``: the ticket's (address, role, staff) as this
    transaction has them, when the caller knows them already; read from the
    database otherwise.  ``postpone=False``: the caller knows there is no
    queued row (the ticket was created in this transaction).
    """
    excluded = _excluded(exclude)
    due = now + timedelta(seconds=float(config.notifier.quiet_period))
    queued = set(conn.execute(_POSTPONE, {"t_id": ticket_id, "due": due}).scalars()) if postpone else set()
    if not visible:
        return
    if participants is None:
        participants = conn.execute(_PARTICIPANTS_OF, {"t_id": ticket_id}).all()
    rows = [
        {"kind": "update", "ticket_id": ticket_id, "recipient": address, "due_at": due, "created_at": now}
        for address in customers(participants, config)
        if address not in excluded and address not in queued
    ]
    if rows:
        conn.execute(_INSERT, rows)


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
    session.flush()
    queue_updates(session.connection(), ticket.id, bool(ticket.visible_to_customers), now, config, exclude)
    rows = session.scalars(
        select(Outbox)
        .where(Outbox.ticket_id == ticket.id, Outbox.kind == "update", Outbox.state == "queued")
        .order_by(Outbox.id)
        .execution_options(populate_existing=True)
    )
    return sorted({row.recipient: row for row in rows}.values(), key=lambda r: r.recipient)


__all__ = ["schedule_update", "queue_updates", "customers", "is_customer"]
