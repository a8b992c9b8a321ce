"""Fill a store with many tickets, generated in the database itself.

For benchmarks and tests of large stores (bench/large_store.py,
tests/test_store_indexes.py): ``fill(store, n)`` appends ``n`` tickets to an
initialised store with set-based ``INSERT ... SELECT`` statements over a
generated sequence (``generate_series`` on PostgreSQL, a recursive CTE on
SQLite), one transaction per batch of tickets, so 10^6 tickets take minutes
and never pass through Python one row at a time.

Proportions, per ticket (roughly those of a help desk's mail):

* a requester among ``n / 3`` customers (a customer opens three tickets in
  the store's life), a staff member among 50 who answers it;
* three message actions (the customer's mail, a staff reply, the customer's
  answer), each with its Message-ID in ``message_ids``; one of our own
  Message-IDs (the acknowledgement) beside them;
* two participants (requester, staff), two sent outbox rows (ack, update);
* an attachment on one ticket in ten, its content one of 16 blobs (the same
  logo, the same form, ...), so blobs are shared as they are in real mail.

The oldest 90% are closed, the rest open or pending; creation times spread
evenly over ``span_days`` before ``now``.  Message-ID keys start with a
scrambled hex number, so they do not arrive in index order (real ones are
random).  Ticket ``i`` (0-based, across fills) has number ``first + i``
and keys ``KEY_FORMAT``; ``message_key(i, k)`` names them for lookups.
Blob files are not written: the rows name blobs that are not on disk.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.engine import Connection

from postdesk.store.apply import TICKET_COUNTER
from postdesk.store.blobs import relative_path
from postdesk.store.core import Store
from postdesk.store.models import Action, Attachment, Counter, MessageId, Outbox, Participant, Person, Ticket

STAFF = 50
CUSTOMERS_PER_TICKET = 1 / 3
BLOBS = 16
BATCH = 50_000  # tickets per transaction
ACTIONS = 3
CLOSED_SHARE = 0.9
SCRAMBLE = 2654435761  # Knuth's multiplicative hash: spreads i over 32 bits


def blob_sha(j: int) -> str:
    return hashlib.sha256(f"postdesk bulk blob {j}".encode()).hexdigest()


def message_key(i: int, k: int) -> str:
    """The stored Message-ID key of action ``k`` (0..2) of bulk ticket ``i``."""
    return f"{(i * SCRAMBLE) % 4294967296:08x}.{i}.{k}@mail.customer{i % 97}.example"


def our_key(i: int) -> str:
    """The key of our acknowledgement of bulk ticket ``i``."""
    return f"pd.{i}.ack@support.example.com"


@dataclass(frozen=True)
class Filled:
    """What ``fill`` added: tickets ``first_index .. first_index + count - 1``."""

    first_index: int
    count: int
    first_number: int
    seconds: float


class _Dialect:
    """The SQL that differs between SQLite and PostgreSQL."""

    def __init__(self, name: str):
        self.pg = name == "postgresql"

    def seq(self) -> str:
        """A CTE ``seq(i)`` of :lo .. :hi - 1."""
        if self.pg:
            return "WITH seq(i) AS (SELECT generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint) - 1))"
        return "WITH RECURSIVE seq(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < :hi)"

    def ts(self, seconds: str) -> str:
        """:base plus ``seconds`` (an SQL expression), in the column's format."""
        if self.pg:
            return f"(CAST(:base AS timestamp) + ({seconds}) * interval '1 second')"
        # SQLAlchemy's SQLite DateTime format, microseconds included: the
        # columns compare as text there.
        return f"strftime('%Y-%m-%d %H:%M:%S.000000', :base, '+' || ({seconds}) || ' seconds')"

    def bool(self, expr: str) -> str:
        return f"({expr})" if self.pg else f"CASE WHEN {expr} THEN 1 ELSE 0 END"

    def true(self) -> str:
        return "true" if self.pg else "1"

    def false(self) -> str:
        return "false" if self.pg else "0"

    def hex8(self, expr: str) -> str:
        if self.pg:
            return f"lpad(to_hex({expr}), 8, '0')"
        return f"printf('%08x', {expr})"

    def cat(self, *parts: str) -> str:
        return "(" + " || ".join(f"CAST({p} AS text)" if not p.startswith("'") else p for p in parts) + ")"


def _max(conn: Connection, column) -> int:
    return int(conn.execute(select(func.coalesce(func.max(column), 0))).scalar() or 0)


def _statements(d: _Dialect) -> list[str]:
    """The INSERT ... SELECT of one batch, in foreign-key order.

    Parameters: lo, hi (ticket indexes), n (total of this fill, for the
    status split), base, span (seconds), offsets (t0 tickets.id, p0
    people.id before the fill, c0 customers' first id, s0 staff's first id,
    customers, a0 actions.id, m0 message_ids.id, pt0 participants.id,
    o0 outbox.id, at0 attachments.id, number0).
    """
    seq = d.seq()
    created = d.ts(":step * (i - :lo_all)")
    requester = "(:c0 + (i % :customers))"
    staff = f"(:s0 + (i % {STAFF}))"
    closed = "(i - :lo_all) < :closed_below"
    ticket_status = f"CASE WHEN {closed} THEN 'closed' WHEN i % 3 = 0 THEN 'pending' ELSE 'open' END"
    updated = d.ts(":step * (i - :lo_all) + 172800")
    action_id = f"(:a0 + i * {ACTIONS} + k.k + 1)"
    key = d.cat(d.hex8(f"((i * {SCRAMBLE}) % 4294967296)"), "'.'", "i", "'.'", "k.k", "'@mail.customer'", "(i % 97)", "'.example'")
    ours = d.cat("'pd.'", "i", "'.ack@support.example.com'")
    ks = " UNION ALL ".join(f"SELECT {k} AS k" for k in range(ACTIONS))
    return [
        # tickets
        f"""INSERT INTO tickets (id, number, subject, status, visible_to_customers, requester_id, created_at, updated_at,
                department, owner_id, merged_into, closed_at, last_public_staff_at, reminded_at)
            {seq}
            SELECT :t0 + i + 1, :number0 + i, {d.cat("'Printer on floor '", "(i % 40)", "' jams again (case '", "i", "')'")},
                {ticket_status}, {d.true()}, {requester}, {created}, {updated},
                '', {staff}, NULL, CASE WHEN {closed} THEN {updated} END,
                {d.ts(":step * (i - :lo_all) + 86400")}, NULL
            FROM seq""",
        # actions: the customer's mail, a staff reply, the customer's answer
        f"""INSERT INTO actions (id, ticket_id, author_id, kind, public, text, new_text, flags, message_id, queue_id,
                delivered_to, auth, html, created_at)
            {seq}, k(k) AS ({ks})
            SELECT {action_id}, :t0 + i + 1, CASE WHEN k.k = 1 THEN {staff} ELSE {requester} END, 'message', {d.true()},
                'Hello, the printer on floor 3 jams on every second page since Monday. Regards',
                'Hello, the printer on floor 3 jams on every second page since Monday.',
                CASE WHEN k.k = 1 THEN 'staff' ELSE '' END, {key}, {d.cat("'Q'", "i", "'K'", "k.k")}, '',
                '{{"dkim": "pass", "dmarc": "pass", "spf": "pass", "verified": true}}', '',
                {d.ts(":step * (i - :lo_all) + 86400 * k.k")}
            FROM seq, k""",
        # message ids of the three messages, and our acknowledgement's
        f"""INSERT INTO message_ids (id, key, digest, ticket_id, action_id, ours, created_at)
            {seq}, k(k) AS ({ks} UNION ALL SELECT {ACTIONS})
            SELECT :m0 + i * {ACTIONS + 1} + k.k + 1,
                CASE WHEN k.k = {ACTIONS} THEN {ours} ELSE {key} END,
                CASE WHEN k.k = {ACTIONS} THEN '' ELSE {d.cat(d.hex8(f"((i * {SCRAMBLE} + k.k) % 4294967296)"), "'00000000'")} END,
                :t0 + i + 1, CASE WHEN k.k = {ACTIONS} THEN NULL ELSE {action_id} END,
                {d.bool(f"k.k = {ACTIONS}")}, {created}
            FROM seq, k""",
        f"""INSERT INTO participants (id, ticket_id, person_id, role, last_update_action_id, last_message_id)
            {seq}, k(k) AS (SELECT 0 AS k UNION ALL SELECT 1)
            SELECT :pt0 + i * 2 + k.k + 1, :t0 + i + 1, CASE WHEN k.k = 0 THEN {requester} ELSE {staff} END,
                CASE WHEN k.k = 0 THEN 'requester' ELSE 'staff' END, :a0 + i * {ACTIONS} + {ACTIONS}, ''
            FROM seq, k""",
        f"""INSERT INTO outbox (id, kind, ticket_id, action_id, recipient, state, due_at, created_at, attempts, lease_until,
                last_error, message_id, queue_id, sent_at, up_to_action_id, action_ids, since_action_id)
            {seq}, k(k) AS (SELECT 0 AS k UNION ALL SELECT 1)
            SELECT :o0 + i * 2 + k.k + 1, CASE WHEN k.k = 0 THEN 'ack' ELSE 'update' END, :t0 + i + 1,
                CASE WHEN k.k = 0 THEN :a0 + i * {ACTIONS} + 1 END,
                {d.cat("'customer'", "(i % :customers)", "'.'", ":p0", "'@customer'", "((i % :customers) % 97)", "'.example'")}, 'sent',
                {created}, {created}, 1, NULL, '', CASE WHEN k.k = 0 THEN {d.cat("'<'", ours, "'>'")} ELSE '' END,
                {d.cat("'S'", "i", "'K'", "k.k")}, {created}, CASE WHEN k.k = 1 THEN :a0 + i * {ACTIONS} + 2 ELSE 0 END, '', 0
            FROM seq, k""",
        f"""INSERT INTO attachments (id, action_id, sha256, size, content_type, filename, content_id, inline, path)
            {seq}
            SELECT :at0 + i / 10 + 1, :a0 + i * {ACTIONS} + 1, b.sha, 48213, 'application/pdf', 'invoice.pdf', '',
                {d.false()}, b.path
            FROM seq JOIN bulk_blobs b ON b.j = (i / 10) % {BLOBS}
            WHERE i % 10 = 0""",
    ]


def fill(store: Store, n: int, *, now: datetime | None = None, span_days: int = 1000, batch: int = BATCH, progress=None) -> Filled:
    """Append ``n`` tickets (and their rows) to ``store``, which is initialised."""
    started = time.monotonic()
    engine = store.engine
    d = _Dialect(engine.dialect.name)
    now = now or datetime.utcnow().replace(microsecond=0)
    base = now - timedelta(days=span_days + 2)  # the newest updated_at is now
    with engine.begin() as conn:
        if not d.pg:
            # Set-based inserts with random index keys: a bigger page cache
            # (this connection only) saves re-reading index pages.
            conn.exec_driver_sql("PRAGMA cache_size = -200000")
        # Ticket indexes continue where an earlier fill stopped: they are
        # counted by the bulk tickets' subject marker below.
        lo_all = int(conn.execute(select(func.count()).select_from(Ticket.__table__).where(Ticket.__table__.c.subject.like("Printer on floor %"))).scalar() or 0)
        number0 = int(conn.execute(select(Counter.__table__.c.value).where(Counter.__table__.c.name == TICKET_COUNTER)).scalar() or 0) + 1
        # bulk ticket i has number number0 + (i - lo_all), so number0 is shifted by lo_all
        offsets = {
            "t0": _max(conn, Ticket.__table__.c.id) - lo_all,
            "a0": _max(conn, Action.__table__.c.id) - lo_all * ACTIONS,
            "m0": _max(conn, MessageId.__table__.c.id) - lo_all * (ACTIONS + 1),
            "pt0": _max(conn, Participant.__table__.c.id) - lo_all * 2,
            "o0": _max(conn, Outbox.__table__.c.id) - lo_all * 2,
            "at0": _max(conn, Attachment.__table__.c.id) - (lo_all + 9) // 10,
            "number0": number0 - lo_all,
        }
        p0 = _max(conn, Person.__table__.c.id)
        customers = max(1, int(n * CUSTOMERS_PER_TICKET))
        people = cast(Table, Person.__table__)
        conn.execute(
            people.insert(),
            [{"id": p0 + 1 + j, "address": f"staff{j}.{p0}@example.com", "name": f"Staff {j}", "staff": True} for j in range(STAFF)]
            + [{"id": p0 + 1 + STAFF + j, "address": f"customer{j}.{p0}@customer{j % 97}.example", "name": f"Customer {j}", "staff": False} for j in range(customers)],
        )
        conn.execute(cast(Table, Counter.__table__).update().where(Counter.__table__.c.name == TICKET_COUNTER).values(value=number0 - 1 + n))
    params = {
        **offsets,
        "lo_all": lo_all,
        "base": base.isoformat(sep=" "),
        "step": max(1, span_days * 86400 // max(1, n)),
        "closed_below": int(n * CLOSED_SHARE),
        "c0": p0 + 1 + STAFF,
        "s0": p0 + 1,
        "customers": customers,
        "p0": p0,
    }
    statements = [text(s) for s in _statements(d)]
    with engine.connect() as conn:
        with conn.begin():
            if not d.pg:
                conn.exec_driver_sql("PRAGMA cache_size = -200000")
            # The 16 blobs, joined by the attachments' INSERT (a temporary
            # table lives as long as this connection).
            conn.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS bulk_blobs (j integer PRIMARY KEY, sha varchar(64), path varchar(255))")
            conn.exec_driver_sql("DELETE FROM bulk_blobs")
            conn.execute(text("INSERT INTO bulk_blobs (j, sha, path) VALUES (:j, :sha, :path)"), [{"j": j, "sha": blob_sha(j), "path": relative_path(blob_sha(j))} for j in range(BLOBS)])
        for lo in range(lo_all, lo_all + n, batch):
            hi = min(lo + batch, lo_all + n)
            with conn.begin():
                for statement in statements:
                    conn.execute(statement, {**params, "lo": lo, "hi": hi})
            if progress is not None:
                progress(hi - lo_all, n)
    with engine.begin() as conn:
        if d.pg:
            for table in ("tickets", "people", "actions", "message_ids", "participants", "outbox", "attachments"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    if d.pg:
        # What autovacuum's analyze does after a bulk load: the planner's
        # statistics (AUTOCOMMIT: ANALYZE of several tables).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return Filled(lo_all, n, offsets["number0"] + lo_all, time.monotonic() - started)
