"""Query plans of the store's frequent queries, on SQLite and PostgreSQL.

A large store stays fast when every query that runs per message (or per
notifier pass, per purge batch, per ``ticket list`` page) reads through an
index instead of scanning a table.  ``HOT`` names those queries, built from
the very statements the store runs, with sample parameters; ``explain``
returns a statement's plan as the database prints it (``EXPLAIN QUERY
PLAN`` on SQLite, ``EXPLAIN`` on PostgreSQL), and ``full_scans`` picks out
the lines that read a whole table.  bench/large_store.py prints them,
tests/test_store_indexes.py asserts them on both databases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from postdesk.store import admin, apply, purge, updates, view
from postdesk.store.models import Outbox, Person


@dataclass(frozen=True)
class Query:
    """A statement, how to make its parameters from a sample ticket, and
    the indexes its plan must use (names as in models.py, "a|b" for either;
    ``UNIQUE`` maps a unique constraint's name to what each database calls
    its index).  Either of two is fine where both read only the rows asked
    for (a window of recent rows, a page, the queued rows), whatever the
    store's size."""

    statement: Executable
    params: Callable[[Sample], dict[str, Any]]
    why: str
    uses: tuple[str, ...] = ()


# The indexes behind unique constraints, as SQLite and PostgreSQL name them.
UNIQUE: Mapping[str, tuple[str, ...]] = {
    "tickets.number": ("sqlite_autoindex_tickets_1", "tickets_number_key"),
    "people.address": ("sqlite_autoindex_people_1", "people_address_key"),
    "message_ids.key": ("sqlite_autoindex_message_ids_1", "uq_message_ids_key_digest"),
    "participants.ticket_id": ("sqlite_autoindex_participants_1", "participants_ticket_id_person_id_key"),
}


@dataclass(frozen=True)
class Sample:
    """Values that exist in the store: a ticket number, one of its message
    keys, its requester's address, and a time."""

    number: int
    ticket_id: int
    key: str
    address: str
    now: datetime


_O = Outbox.__table__
# The notifier's per-pass count of acknowledgements sent in the window
# (postdesk/store/outbox.py, the ack rate limit).
_ACKS_SENT = (
    select(_O.c.recipient, func.count(_O.c.id))
    .where(_O.c.kind == "ack", _O.c.state == "sent", _O.c.sent_at > bindparam("since"))
    .group_by(_O.c.recipient)
)

_UPDATES_SENT = select(_O.c.ticket_id, _O.c.recipient, _O.c.sent_at).where(
    _O.c.ticket_id.in_(bindparam("tickets", expanding=True)), _O.c.kind == "update", _O.c.state == "sent", _O.c.sent_at > bindparam("since")
)
_HOUR_AGO = timedelta(hours=1)

HOT: Mapping[str, Query] = {
    "follow-up by tag": Query(view._TICKET, lambda s: {"number": s.number}, "a [#N] in the subject", ("tickets.number",)),
    "participants of a ticket": Query(
        view._PARTICIPANT_ADDRESSES, lambda s: {"t_id": s.ticket_id}, "who may write to it", ("participants.ticket_id",)
    ),
    "follow-up by In-Reply-To": Query(
        view._TICKETS_OF_KEYS, lambda s: {"keys": [s.key, "nobody@nowhere.example"]}, "a reply naming a Message-ID we know", ("message_ids.key",)
    ),
    "duplicate": Query(view._SEEN_WITH, lambda s: {"key": s.key, "digest": ""}, "the same message delivered again", ("message_ids.key",)),
    "tickets opened by a sender": Query(
        view._OPENED_GENUINE,
        lambda s: {"address": s.address, "since": s.now - _HOUR_AGO},
        "the new-ticket rate limit",
        ("people.address", "ix_tickets_requester_created", "ix_actions_ticket_id"),
    ),
    "verified tickets opened by a sender": Query(
        view._OPENED_VERIFIED,
        lambda s: {"address": s.address, "since": s.now - _HOUR_AGO},
        "the new-ticket rate limit",
        ("people.address", "ix_tickets_requester_created"),
    ),
    "mail sent to a sender on a ticket": Query(
        view._SENT_TIMES, lambda s: {"number": s.number, "address": s.address, "limit": 2}, "the auto-responder rule", ("tickets.number",)
    ),
    "a sender's messages on a ticket": Query(
        view._AUTHORED_TIMES, lambda s: {"number": s.number, "address": s.address, "limit": 1}, "the auto-responder rule", ("tickets.number", "ix_actions_ticket_id|ix_actions_author_ticket")
    ),
    "ticket of a Message-ID": Query(
        apply._TICKET_NUMBER_OF_KEY_DIGEST, lambda s: {"key": s.key, "digest": ""}, "a duplicate's ticket", ("message_ids.key",)
    ),
    "lock a ticket": Query(apply._LOCK_TICKET, lambda s: {"number": s.number}, "every follow-up", ("tickets.number",)),
    "everyone on a ticket": Query(apply._PARTICIPANTS_OF, lambda s: {"t_id": s.ticket_id}, "every follow-up", ("participants.ticket_id",)),
    "queued updates of a ticket": Query(
        updates._QUEUED, lambda s: {"t_id": s.ticket_id}, "every public change", ("ix_outbox_ticket_id|ix_outbox_due|ix_outbox_sent",)
    ),
    "person by address": Query(apply._PERSON, lambda s: {"address": s.address}, "the author of every message", ("people.address",)),
    "mail we sent": Query(view._SENT, lambda s: {"ids": [s.key, f"<{s.key}>"]}, "the stranger rule", ("ix_outbox_message_state",)),
    "acks sent in the window": Query(_ACKS_SENT, lambda s: {"since": s.now - _HOUR_AGO}, "the notifier's ack limit", ("ix_outbox_sent",)),
    "updates sent in the window": Query(
        _UPDATES_SENT, lambda s: {"tickets": [s.ticket_id], "since": s.now - _HOUR_AGO}, "the notifier's update limit", ("ix_outbox_ticket_id|ix_outbox_sent",)
    ),
    "ticket list page": Query(admin.ticket_page(None), lambda s: {"after": s.number, "limit": 50}, "postdesk ticket list", ("tickets.number",)),
    "ticket list page, closed": Query(
        admin.ticket_page("closed"), lambda s: {"after": s.number, "limit": 50}, "postdesk ticket list --status closed", ("ix_tickets_status_number|tickets.number",)
    ),
    "purge batch": Query(
        purge.CANDIDATES,
        lambda s: {"before": s.now - timedelta(days=365), "limit": 100},
        "postdesk purge",
        ("ix_tickets_status_updated", "ix_outbox_ticket_id|ix_outbox_due"),
    ),
    "people still referenced": Query(
        purge.referenced_people(),
        lambda s: {"ids": [1, 2, 3]},
        "postdesk purge: who is left",
        ("ix_tickets_requester_created", "ix_tickets_owner_id", "ix_actions_author_ticket", "ix_participants_person_id"),
    ),
}


def explain(conn: Connection, statement: Executable, params: Mapping[str, Any]) -> list[str]:
    """The plan of ``statement`` with ``params``, a line per step."""
    compiled = statement.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
    # The IN lists expanded and the values in the driver's paramstyle.
    state = compiled.construct_expanded_state(dict(params))
    if conn.dialect.name == "sqlite":
        # EXPLAIN reads no table, so it plans with the schema this
        # connection last loaded; a read makes SQLite notice a newer one
        # (indexes another connection just created).
        conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()
        args: Any = tuple(state.parameters[k] for k in state.positiontup or ())
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + state.statement, args).all()
        return [str(row[-1]) for row in rows]
    rows = conn.exec_driver_sql("EXPLAIN " + state.statement, dict(state.parameters)).all()
    return [str(row[0]) for row in rows]


_SQLITE_SCAN = re.compile(r"^SCAN (\w+)(?! USING (?:COVERING )?INDEX)(?!.*USING INTEGER PRIMARY KEY)")
_PG_SCAN = re.compile(r"Seq Scan on (\w+)")


def index_names(name: str) -> tuple[str, ...]:
    """What the databases call index ``name`` (see ``UNIQUE``)."""
    return UNIQUE.get(name, (name,))


def missing_indexes(lines: list[str], uses: tuple[str, ...]) -> list[str]:
    """Those of ``uses`` the plan does not read through."""
    text = "\n".join(lines)
    return [u for u in uses if not any(re.search(rf"\b{re.escape(n)}\b", text) for alt in u.split("|") for n in index_names(alt))]


def full_scans(lines: list[str]) -> list[str]:
    """The tables a plan reads whole (SQLite ``SCAN t``, PostgreSQL ``Seq Scan on t``).

    SQLite's ``SCAN`` of a CTE or subquery result is no table read.
    """
    found = []
    for line in lines:
        m = _SQLITE_SCAN.search(line.strip()) or _PG_SCAN.search(line)
        if m:
            found.append(m.group(1))
    return found


def sample(conn: Connection, number: int, key: str, now: datetime) -> Sample:
    """A Sample for ticket ``number`` (its requester's address looked up)."""
    from postdesk.store.models import Ticket

    t = Ticket.__table__
    p = Person.__table__
    row = conn.execute(select(t.c.id, p.c.address).join(p, t.c.requester_id == p.c.id).where(t.c.number == number)).first()
    if row is None:
        raise LookupError(f"no ticket #{number}")
    return Sample(number, row[0], key, row[1], now)


def report(conn: Connection, s: Sample) -> dict[str, list[str]]:
    """Every HOT query's plan for the sample."""
    return {name: explain(conn, q.statement, q.params(s)) for name, q in HOT.items()}


def problems(conn: Connection, s: Sample) -> dict[str, str]:
    """The HOT queries whose plan scans a table or misses an index they need."""
    out = {}
    for name, q in HOT.items():
        lines = explain(conn, q.statement, q.params(s))
        scans, missing = full_scans(lines), missing_indexes(lines, q.uses)
        if scans or missing:
            out[name] = f"scans {scans}, misses {missing}: " + " | ".join(lines)
    return out
