"""Merge ticket M into ticket N: ``[merge #N]`` by mail, ``postdesk ticket merge M N``.

M's actions (with their attachments), its participants and every
Message-ID known on it (received and sent) become N's, so later mail with
M's tag or answering any of M's messages lands on N (the filter follows
``merged_into`` too, ``postdesk.filter.thread.resolve``).  M stays as a
closed, empty ticket with ``merged_into`` = N and a private note; N gets a
private note naming M.  A merge into a ticket that was itself merged
follows the chain to the ticket it ended in; merging a ticket into itself,
into a ticket merged into it (a cycle), or a ticket already merged is
refused with ``MergeRefused``.

People moved over hear only what happens on N from now on: their mark
(``last_update_action_id``) moves to N's newest action, so N's history is
not mailed to M's customer.  Runs inside the caller's transaction; both
ticket rows are locked.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.engine import Connection

from postdesk.store.models import Action, MessageId, Outbox, Participant, Ticket

_T = cast(Table, Ticket.__table__)
_A = cast(Table, Action.__table__)
_M = cast(Table, MessageId.__table__)
_P = cast(Table, Participant.__table__)
_O = cast(Table, Outbox.__table__)

MAX_CHAIN = 50

_ROW = select(_T.c.id, _T.c.number, _T.c.merged_into, _T.c.subject).where(_T.c.number == bindparam("number")).with_for_update()


class MergeRefused(ValueError):
    """A merge that must not happen (self, cycle, already merged); the message says why."""


def _row(conn: Connection, number: int):
    row = conn.execute(_ROW, {"number": number}).first()
    if row is None:
        raise LookupError(f"no ticket {number}")
    return row


def target(conn: Connection, source: int, into: int) -> int:
    """The ticket a merge of ``source`` into ``into`` ends in (the chain followed)."""
    if into == source:
        raise MergeRefused(f"ticket {source} cannot be merged into itself")
    number, seen = into, [into]
    for _ in range(MAX_CHAIN):
        row = _row(conn, number)
        if row.merged_into is None:
            return number
        number = row.merged_into
        if number == source:
            raise MergeRefused(f"ticket {into} was merged into {source}: merging {source} into it would make a cycle")
        if number in seen:
            raise MergeRefused(f"the merge chain from ticket {into} loops")
        seen.append(number)
    raise MergeRefused(f"the merge chain from ticket {into} is longer than {MAX_CHAIN}")


def _note(conn: Connection, ticket_id: int, author_id: int | None, text: str, now: datetime) -> None:
    conn.execute(
        _A.insert(),
        {
            "ticket_id": ticket_id, "author_id": author_id, "kind": "system", "public": False, "text": text,
            "new_text": text, "flags": "merged", "message_id": "", "queue_id": "", "delivered_to": "", "created_at": now,
        },
    )


def merge(conn: Connection, source: int, into: int, now: datetime, author_id: int | None = None, tag: str = "#") -> int:
    """Merge ticket ``source`` into ``into`` (module docstring); returns the
    number it was merged into (``into``, or the end of its chain)."""
    m = _row(conn, source)
    if m.merged_into is not None:
        raise MergeRefused(f"ticket {source} was already merged into {m.merged_into}")
    final = target(conn, source, into)
    n = _row(conn, final)
    conn.execute(update(_A).where(_A.c.ticket_id == m.id).values(ticket_id=n.id))
    conn.execute(update(_M).where(_M.c.ticket_id == m.id).values(ticket_id=n.id))
    newest = conn.execute(select(func.max(_A.c.id)).where(_A.c.ticket_id == n.id)).scalar() or 0
    on_n = set(conn.execute(select(_P.c.person_id).where(_P.c.ticket_id == n.id)).scalars())
    for pt_id, person_id, role in conn.execute(select(_P.c.id, _P.c.person_id, _P.c.role).where(_P.c.ticket_id == m.id)).all():
        if person_id in on_n:
            conn.execute(delete(_P).where(_P.c.id == pt_id))
        else:
            # N has its own requester: M's joins as a cc.
            conn.execute(
                update(_P).where(_P.c.id == pt_id).values(
                    ticket_id=n.id, role="cc" if role == "requester" else role, last_update_action_id=newest
                )
            )
    # Mail still to go about M goes about N; an update already queued on N
    # for the same person carries M's news too.
    queued_n = set(conn.execute(select(_O.c.recipient).where(_O.c.ticket_id == n.id, _O.c.kind == "update", _O.c.state == "queued")).scalars())
    if queued_n:
        conn.execute(delete(_O).where(_O.c.ticket_id == m.id, _O.c.kind == "update", _O.c.state == "queued", _O.c.recipient.in_(queued_n)))
    conn.execute(update(_O).where(_O.c.ticket_id == m.id, _O.c.state == "queued").values(ticket_id=n.id))
    conn.execute(
        update(_T).where(_T.c.id == m.id).values(status="closed", closed_at=now, updated_at=now, merged_into=final, reminded_at=None)
    )
    conn.execute(update(_T).where(_T.c.id == n.id).values(updated_at=now))
    _note(conn, m.id, author_id, f"Merged into [{tag}{final}]", now)
    _note(conn, n.id, author_id, f"Ticket [{tag}{source}] ({m.subject}) was merged into this one"[:2000], now)
    return final
