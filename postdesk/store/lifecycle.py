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
handle one ticket twice (on SQLite the write transaction is open before
the query: writers take turns).  With nothing due, a pass costs one
read-only query per rule and takes no write lock.
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

_COLUMNS = (
    _TICKETS.c.id,
    _TICKETS.c.number,
    _TICKETS.c.visible_to_customers,
    _TICKETS.c.last_public_staff_at,
    _PEOPLE.c.address,
    _PEOPLE.c.staff,
)
_PENDING = _TICKETS.c.status == "pending"


def _due(*where, limit: int, lock: bool = True):
    q = (
        select(*_COLUMNS)
        .join(_PEOPLE, _PEOPLE.c.id == _TICKETS.c.requester_id)
        .where(_PENDING, *where)
        .order_by(_TICKETS.c.last_public_staff_at)
        .limit(limit)
    )
    # Only the ticket rows are locked; a second notifier skips them.
    return q.with_for_update(skip_locked=True, of=_TICKETS) if lock else q


def close_due_query(cutoff: datetime, limit: int, lock: bool = True):
    """Pending tickets whose last public staff action is at or before ``cutoff``."""
    return _due(_TICKETS.c.last_public_staff_at <= cutoff, limit=limit, lock=lock)


def reminder_due_query(cutoff: datetime, not_before: datetime | None, limit: int, lock: bool = True):
    """Pending tickets not yet reminded whose last public staff action is at
    or before ``cutoff`` (and after ``not_before``: those are closed instead)."""
    where = [_TICKETS.c.last_public_staff_at <= cutoff, _TICKETS.c.reminded_at.is_(None)]
    if not_before is not None:
        where.append(_TICKETS.c.last_public_staff_at > not_before)
    return _due(*where, limit=limit, lock=lock)


_MARK_REMINDED = (
    _TICKETS.update()
    .where(_TICKETS.c.id == bindparam("t_id"), _PENDING, _TICKETS.c.reminded_at.is_(None))
    .values(reminded_at=bindparam("t_at"))
)
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
    reminder; batch by batch, one transaction each.

    The common case, nothing due, costs one read-only look (no write lock:
    the milter is never held up by a notifier tick)."""
    stats = LifecycleStats()
    lc = config.lifecycle
    close_after, remind_after = float(lc.pending_close), float(lc.pending_reminder)
    close_cutoff = now - timedelta(seconds=close_after) if close_after else None
    # A reminder once the close is due would be news of nothing.
    remind_cutoff = now - timedelta(seconds=remind_after) if remind_after and (not close_after or remind_after < close_after) else None
    if not _anything_due(store, close_cutoff, remind_cutoff):
        return stats
    if close_cutoff is not None:
        while True:
            n = _batch(store, close_due_query(close_cutoff, batch), lambda conn, rows: _close(conn, rows, config, now))
            stats.closed += n
            if n < batch:
                break
    if remind_cutoff is not None:
        while True:
            n = _batch(store, reminder_due_query(remind_cutoff, close_cutoff, batch), lambda conn, rows: _remind(conn, rows, config, now))
            stats.reminded += n
            if n < batch:
                break
    return stats


def _anything_due(store, close_cutoff: datetime | None, remind_cutoff: datetime | None) -> bool:
    queries = []
    if close_cutoff is not None:
        queries.append(close_due_query(close_cutoff, 1, lock=False))
    if remind_cutoff is not None:
        queries.append(reminder_due_query(remind_cutoff, close_cutoff, 1, lock=False))
    if not queries:
        return False
    with unavailable_on_failure("lifecycle"), store.session(read_only=True) as s:
        return any(s.connection().execute(q).first() is not None for q in queries)


def _batch(store, query, handle) -> int:
    """One transaction: lock a batch of due tickets and handle them; the
    number of rows the query returned (a full batch: there may be more).
    On SQLite the write transaction (BEGIN IMMEDIATE) is open before the
    query, on PostgreSQL the rows are locked and re-checked by it: a ticket
    a customer's reply reopened meanwhile is not among them."""
    with unavailable_on_failure("lifecycle"), store.session() as s:
        conn = s.connection()
        rows = conn.execute(query).all()
        if rows:
            handle(conn, rows)
        return len(rows)


def _close(conn: Connection, rows, config: Config, now: datetime) -> None:
    for row in rows:
        _close_one(conn, row, config, now)


def _close_one(conn: Connection, row, config: Config, now: datetime) -> None:
    t_id, number, visible, since, _address, _staff = row
    action_id = change_status(conn, t_id, "pending", "closed", None, now, flags="closed auto-close")
    text = f"Closed automatically: no answer for {_days(float(config.lifecycle.pending_close))} while the ticket was waiting for it."
    conn.execute(_WORDING, {"a_id": action_id, "a_text": text})
    if config.organization.status_change_emails:
        queue_updates(conn, t_id, bool(visible), now, config)
    log.info("NOQUEUE: ticket=%d status=closed reason=\"pending since %s\"", number, since.isoformat(timespec="seconds"))


def _remind(conn: Connection, rows, config: Config, now: datetime) -> None:
    """A batch's reminders in three statements (executemany): reminded_at,
    the outbox rows, the private actions saying so."""
    conn.execute(_MARK_REMINDED, [{"t_id": row[0], "t_at": now} for row in rows])
    outbox, actions = [], []
    for t_id, number, visible, _since, address, staff in rows:
        if not (visible and address and "@" in address and is_customer(address, "requester", bool(staff), config)):
            log.info("NOQUEUE: ticket=%d kind=reminder status=suppressed reason=\"no customer to remind\"", number)
            continue
        outbox.append({"kind": "reminder", "ticket_id": t_id, "recipient": address, "due_at": now, "created_at": now, "up_to_action_id": 0})
        actions.append(
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
            }
        )
    if outbox:
        conn.execute(_OUTBOX.insert(), outbox)
        conn.execute(_ACTIONS.insert(), actions)


__all__ = ["BATCH", "LifecycleStats", "close_due_query", "reminder_due_query", "run"]
