"""Pending tickets: the one reminder and the auto-close, on the notifier's ticks.

A ticket waiting for the customer (status ``pending``) is timed from the
last public staff action on it (``tickets.last_public_staff_at``, set by
``postdesk.store.apply``), not from any change of the ticket: a private
note or a status mail does not restart it.

- ``[lifecycle] pending_close`` seconds after it, the ticket is closed: a
  public status action flagged ``auto-close`` (the customer's status mail
  follows ``status_change_emails``, like any status change).
- ``[lifecycle] pending_reminder`` seconds after it, if the ticket is not
  due to close yet, its requester gets one ``reminder`` (an outbox row the
  same pass sends), a private system action says so on the ticket, and
  ``reminded_at`` is set: one reminder per pending period (a status change
  clears it).  0 turns either off.

``run`` is called by the notifier at the start of every pass.  The due
tickets are found by range on ``ix_tickets_pending`` (status,
last_public_staff_at), so a pass over 10,000 pending tickets reads only the
due ones; they are handled in batches of ``BATCH``, one transaction each,
locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so two notifiers never
handle one ticket twice (SQLite serialises writers instead, and the UPDATE
repeats the condition).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Connection

from postdesk.config import Config
from postdesk.outbox_rows import is_customer
from postdesk.store.apply import change_status
from postdesk.store.errors import unavailable_on_failure
from postdesk.store.models import Action, Outbox, Person, Ticket
from postdesk.store.updates import queue_updates

log = logging.getLogger("postdesk.notifier")

BATCH = 100  # tickets per transaction: short locks, few commits

_TICKETS = cast(Table, Ticket.__table__)
_PEOPLE = cast(Table, Person.__table__)
_ACTIONS = cast(Table, Action.__table__)
_OUTBOX = cast(Table, Outbox.__table__)

_COLUMNS = (_TICKETS.c.id, _TICKETS.c.number, _TICKETS.c.visible_to_customers, _TICKETS.c.requester_id, _TICKETS.c.last_public_staff_at)
_PENDING = _TICKETS.c.status == "pending"


def close_due_query(cutoff: datetime, limit: int):
    """Pending tickets whose last public staff action is at or before ``cutoff``."""
    return (
        select(*_COLUMNS)
        .where(_PENDING, _TICKETS.c.last_public_staff_at <= cutoff)
        .order_by(_TICKETS.c.last_public_staff_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def reminder_due_query(cutoff: datetime, not_before: datetime | None, limit: int):
    """Pending tickets not yet reminded whose last public staff action is at
    or before ``cutoff`` (and after ``not_before``: those are closed instead)."""
    where = [_PENDING, _TICKETS.c.last_public_staff_at <= cutoff, _TICKETS.c.reminded_at.is_(None)]
    if not_before is not None:
        where.append(_TICKETS.c.last_public_staff_at > not_before)
    return select(*_COLUMNS).where(*where).order_by(_TICKETS.c.last_public_staff_at).limit(limit).with_for_update(skip_locked=True)


_MARK_REMINDED = (
    _TICKETS.update()
    .where(_TICKETS.c.id == bindparam("t_id"), _PENDING, _TICKETS.c.reminded_at.is_(None))
    .values(reminded_at=bindparam("t_at"))
)
_STILL_DUE = select(_TICKETS.c.id).where(
    _TICKETS.c.id == bindparam("t_id"), _PENDING, _TICKETS.c.last_public_staff_at <= bindparam("t_cutoff")
)
_PERSON = select(_PEOPLE.c.address, _PEOPLE.c.staff).where(_PEOPLE.c.id == bindparam("p_id"))
_WORDING = _ACTIONS.update().where(_ACTIONS.c.id == bindparam("a_id")).values(text=bindparam("a_text"), new_text=bindparam("a_text"))


@dataclass
class LifecycleStats:
    reminded: int = 0
    closed: int = 0


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds:g} seconds"


def run(store, config: Config, now: datetime, batch: int = BATCH) -> LifecycleStats:
    """Close the pending tickets that are due, then remind the ones due a
    reminder; batch by batch, one transaction each."""
    stats = LifecycleStats()
    lc = config.lifecycle
    close_after, remind_after = float(lc.pending_close), float(lc.pending_reminder)
    close_cutoff = now - timedelta(seconds=close_after) if close_after else None
    if close_cutoff is not None:
        while True:
            n = _batch(store, close_due_query(close_cutoff, batch), lambda conn, row: _close(conn, row, config, now, close_cutoff))
            stats.closed += n
            if n < batch:
                break
    # A reminder after the close is due would be news of nothing.
    if remind_after and (not close_after or remind_after < close_after):
        remind_cutoff = now - timedelta(seconds=remind_after)
        while True:
            n = _batch(store, reminder_due_query(remind_cutoff, close_cutoff, batch), lambda conn, row: _remind(conn, row, config, now))
            stats.reminded += n
            if n < batch:
                break
    return stats


def _batch(store, query, handle) -> int:
    """One transaction: lock a batch of due tickets and handle each; the
    number of rows the query returned (a full batch: there may be more)."""
    with unavailable_on_failure("lifecycle"), store.session() as s:
        conn = s.connection()
        rows = conn.execute(query).all()
        for row in rows:
            handle(conn, row)
        return len(rows)


def _close(conn: Connection, row, config: Config, now: datetime, cutoff: datetime) -> None:
    t_id, number, visible, _requester, since = row
    # SQLite has no row locks: the condition again, under the write lock.
    if conn.execute(_STILL_DUE, {"t_id": t_id, "t_cutoff": cutoff}).first() is None:
        return
    action_id = change_status(conn, t_id, "pending", "closed", None, now, flags="closed auto-close")
    text = f"Closed automatically: no answer for {_days(float(config.lifecycle.pending_close))} while the ticket was waiting for it."
    conn.execute(_WORDING, {"a_id": action_id, "a_text": text})
    if config.organization.status_change_emails:
        queue_updates(conn, t_id, bool(visible), now, config)
    log.info("NOQUEUE: ticket=%d status=closed reason=\"pending since %s\"", number, since.isoformat(timespec="seconds"))


def _remind(conn: Connection, row, config: Config, now: datetime) -> None:
    t_id, number, visible, requester_id, _since = row
    if conn.execute(_MARK_REMINDED, {"t_id": t_id, "t_at": now}).rowcount != 1:
        return  # reminded meanwhile (SQLite: another notifier), or no longer pending
    person = conn.execute(_PERSON, {"p_id": requester_id}).first()
    address = person[0] if person else ""
    if not (visible and address and "@" in address and is_customer(address, "requester", bool(person and person[1]), config)):
        log.info("NOQUEUE: ticket=%d kind=reminder status=suppressed reason=\"no customer to remind\"", number)
        return
    conn.execute(
        _OUTBOX.insert(),
        {"kind": "reminder", "ticket_id": t_id, "recipient": address, "due_at": now, "created_at": now, "up_to_action_id": 0},
    )
    conn.execute(
        _ACTIONS.insert(),
        {
            "ticket_id": t_id,
            "author_id": None,
            "kind": "system",
            "public": False,
            "text": f"Reminder queued to {address}: the ticket waits for their answer.",
            "new_text": "",
            "flags": "reminder",
            "message_id": "",
            "queue_id": "",
            "delivered_to": "",
            "created_at": now,
        },
    )


__all__ = ["BATCH", "LifecycleStats", "close_due_query", "reminder_due_query", "run"]
