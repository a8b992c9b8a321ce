"""Debounced customer updates: the "two quiet minutes" timer, with a bound.

Each change a customer should hear about (a public action, a status change
when ``status_change_emails`` is on, the ticket made visible, an action
toggled to public) calls ``queue_updates`` inside the transaction that made
the change, on its connection: the per-message path
(``postdesk.store.apply``) and the admin operations
(``postdesk.store.admin``) share this one function.

Per ticket and recipient there is at most one *queued* ``update`` row.
Every change moves its ``due_at`` to

    min(last change + quiet_period, first queued change + max_wait)

so the mail goes once the ticket has been quiet for ``quiet_period``, but a
steady stream of changes cannot hold it back longer than ``max_wait`` after
the first change it waits for (the row's ``created_at``).  A row whose due
time lies beyond ``now + quiet_period`` was deferred by a rate limit
(``postdesk.notifier.policy``) and keeps its time.  The update then carries
everything since the recipient's ``last_update_action_id`` (the notifier
composes it when due).  A row the notifier has already claimed (state
``sending``) is left alone and a new queued row is created.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Connection

from postdesk.config import Config
from postdesk.outbox_rows import customers
from postdesk.store.fastexec import execute as fast
from postdesk.store.models import Outbox, Participant, Person

_OUTBOX = cast(Table, Outbox.__table__)
_PARTICIPANTS = cast(Table, Participant.__table__)
_PEOPLE = cast(Table, Person.__table__)

# The ticket's queued updates (the caller holds the ticket's lock).
_QUEUED = select(_OUTBOX.c.id, _OUTBOX.c.recipient, _OUTBOX.c.created_at, _OUTBOX.c.due_at).where(
    _OUTBOX.c.ticket_id == bindparam("t_id"),
    _OUTBOX.c.kind == "update",
    _OUTBOX.c.state == "queued",
)
_POSTPONE = _OUTBOX.update().where(_OUTBOX.c.id == bindparam("o_id")).values(due_at=bindparam("o_due"))
# (address, role, staff) of everyone on the ticket.
_PARTICIPANTS_OF = (
    select(_PEOPLE.c.address, _PARTICIPANTS.c.role, _PEOPLE.c.staff)
    .join(_PEOPLE, _PEOPLE.c.id == _PARTICIPANTS.c.person_id)
    .where(_PARTICIPANTS.c.ticket_id == bindparam("t_id"))
)
_INSERT = _OUTBOX.insert()


def _excluded(exclude: str | Iterable[str] | None) -> set[str]:
    if isinstance(exclude, str):
        return {exclude.lower()}
    return {a.lower() for a in (exclude or ())}


def due_at(now: datetime, first: datetime, current: datetime | None, config: Config) -> datetime:
    """When a queued update goes after a change at ``now``: ``quiet_period``
    after it, but no later than ``max_wait`` after ``first`` (the change the
    row was queued for).  A ``current`` due time beyond ``now +
    quiet_period`` is a rate limit's deferral, and stays."""
    quiet = now + timedelta(seconds=float(config.notifier.quiet_period))
    if current is not None and current > quiet:
        return current
    return min(quiet, first + timedelta(seconds=float(config.notifier.max_wait)))


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
    """Queue (or postpone) the customer updates of ticket ``ticket_id``.

    ``exclude``: addresses that need no row for this change (the author,
    people who received the message directly).  Their already queued rows
    are still postponed: the ticket's timer restarts for everyone.
    ``participants``: the ticket's (address, role, staff) as this
    transaction has them, when the caller knows them already; read from the
    database otherwise.  ``postpone=False``: the caller knows there is no
    queued row (the ticket was created in this transaction).
    """
    queued: set[str] = set()
    if postpone:
        moves = []
        for o_id, recipient, created, current in fast(conn, _QUEUED, {"t_id": ticket_id}):
            queued.add(recipient)
            due = due_at(now, created, current, config)
            if due != current:
                moves.append({"o_id": o_id, "o_due": due})
        if moves:
            fast(conn, _POSTPONE, moves)
    if not visible:
        return
    if participants is None:
        participants = fast(conn, _PARTICIPANTS_OF, {"t_id": ticket_id}).all()
    excluded = _excluded(exclude)
    due = due_at(now, now, None, config)
    rows = [
        {"kind": "update", "ticket_id": ticket_id, "recipient": address, "due_at": due, "created_at": now}
        for address in customers(participants, config)
        if address not in excluded and address not in queued
    ]
    if rows:
        fast(conn, _INSERT, rows)


__all__ = ["due_at", "queue_updates"]
