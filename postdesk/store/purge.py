"""Retention: remove old closed tickets, and erase one person (GDPR).

``purge_closed`` removes the tickets closed and last updated before a time,
with everything that hangs off them: actions, attachment rows, Message-IDs,
participants and outbox rows; then the people and the blobs that nothing
references any more.  It works in short batches, each its own transaction
(``BATCH`` tickets, a pause between them), so the milter, which writes one
message per transaction, waits at most one batch: on SQLite a batch holds
the one write lock, on PostgreSQL it locks only the rows it deletes (and
skips tickets another transaction holds, ``SKIP LOCKED``).  A ticket with
an outbox row still queued or being sent is left for a later run.

``count_closed`` answers the same question without changing anything
(``--dry-run``).

``forget_person`` erases one address (docs/retention.md says why it works
this way): the tickets the person requested are purged whole, since the
staff replies on them quote the person's mail; on other tickets the
person's own actions lose their text, HTML, Message-ID and attachments,
their address is replaced wherever it is stored in those tickets' text, and
they stop being a participant.  The person's row goes when nothing
references it, otherwise its address becomes ``forgotten-<id>@invalid``
(RFC 2606 reserves .invalid) and its name is emptied.

Blobs nothing references go with ``Store.delete_blob`` in the batch's
transaction: database blobs with it, blob files only after it has committed,
and only when no message used them within ``blobs.directory.GRACE``
(``unlink_unused``): a message being recorded at the same moment may be
about to reference the very same bytes.  Files kept for being recent are
listed in ``<attachments>/.purge-pending``; the next run looks again
(``sweep_pending``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Table, and_, bindparam, delete, except_, exists, func, not_, or_, select, union, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from postdesk.store.blobs import BlobInUse, unlink_unused
from postdesk.store.blobs.directory import pending, save_pending
from postdesk.store.errors import StoreUnavailable
from postdesk.store.models import Action, Attachment, MessageId, Outbox, Participant, Person, Ticket

if TYPE_CHECKING:
    from postdesk.store.core import Store

log = logging.getLogger("postdesk.purge")
T = TypeVar("T")

_T: Table = Ticket.__table__  # type: ignore[assignment]
_A: Table = Action.__table__  # type: ignore[assignment]
_AT: Table = Attachment.__table__  # type: ignore[assignment]
_M: Table = MessageId.__table__  # type: ignore[assignment]
_P: Table = Participant.__table__  # type: ignore[assignment]
_PE: Table = Person.__table__  # type: ignore[assignment]
_O: Table = Outbox.__table__  # type: ignore[assignment]

BATCH = 200  # tickets per transaction: a few thousand rows, tens of milliseconds
PAUSE = 0.05  # seconds between batches at least, so writers waiting on the lock get in
PENDING = ("queued", "sending")

# An outbox row still to be sent (or being sent) keeps its ticket.
_UNSENT = exists().where(_O.c.ticket_id == _T.c.id, _O.c.state.in_(PENDING))
_EXPIRED = and_(_T.c.status == "closed", _T.c.updated_at < bindparam("before"), ~_UNSENT)
# One batch, oldest first: ix_tickets_status_updated (revision 0006) reads
# just these rows.
CANDIDATES: Select = select(_T.c.id).where(_EXPIRED).order_by(_T.c.updated_at).limit(bindparam("limit"))


@dataclass
class Counts:
    """Rows removed (or, for a dry run, that would be)."""

    tickets: int = 0
    actions: int = 0
    attachments: int = 0
    message_ids: int = 0
    participants: int = 0
    outbox: int = 0
    people: int = 0
    blobs: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


def referenced_people() -> Select:
    """Which of the people ``ids`` something still references."""
    ids: Any = bindparam("ids", expanding=True)
    return union(
        select(_T.c.requester_id.label("id")).where(_T.c.requester_id.in_(ids)),
        select(_T.c.owner_id).where(_T.c.owner_id.in_(ids)),
        select(_A.c.author_id).where(_A.c.author_id.in_(ids)),
        select(_P.c.person_id).where(_P.c.person_id.in_(ids)),
    )  # type: ignore[return-value]


def _chunks(values: list, size: int = 500) -> Iterable[list]:
    """IN lists of bounded length (SQLite limits bound parameters)."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _people_of(conn: Connection, ticket_ids: list[int], action_ids: list[int]) -> set[int]:
    people: set[int] = set()
    for chunk in _chunks(ticket_ids):
        for requester, owner in conn.execute(select(_T.c.requester_id, _T.c.owner_id).where(_T.c.id.in_(chunk))):
            people.add(requester)
            if owner is not None:
                people.add(owner)
        people.update(conn.execute(select(_P.c.person_id).where(_P.c.ticket_id.in_(chunk))).scalars())
    for chunk in _chunks(action_ids):
        people.update(p for p in conn.execute(select(_A.c.author_id).where(_A.c.id.in_(chunk))).scalars() if p is not None)
    return people


def drop_unreferenced_people(conn: Connection, people: Iterable[int]) -> int:
    """Delete those of ``people`` nothing references any more."""
    candidates = sorted(set(people))
    gone = 0
    for chunk in _chunks(candidates):
        still = set(conn.execute(referenced_people(), {"ids": chunk}).scalars())
        free = [p for p in chunk if p not in still]
        if free:
            gone += conn.execute(delete(_PE).where(_PE.c.id.in_(free))).rowcount or 0
    return gone


def unreferenced_blobs(conn: Connection, shas: Iterable[str]) -> set[str]:
    """Those of ``shas`` no attachment row names any more."""
    candidates = sorted(set(shas))
    free: set[str] = set()
    for chunk in _chunks(candidates):
        still = set(conn.execute(select(_AT.c.sha256).where(_AT.c.sha256.in_(chunk)).distinct()).scalars())
        free.update(s for s in chunk if s not in still)
    return free


def drop_blobs(store: Store, conn: Connection, shas: Iterable[str]) -> int:
    """``Store.delete_blob`` in this transaction for each of ``shas``, which
    no attachment references: database rows go with the transaction, files
    after it commits (unless a message touched them meanwhile).  A blob a
    message referenced again meanwhile (PostgreSQL: it held the blob row,
    the delete waited for it) is kept.  Returns how many were dropped."""
    dropped = 0
    for sha in sorted(shas):
        try:
            store.delete_blob(sha, conn)
            dropped += 1
        except BlobInUse:
            continue
    return dropped


def delete_tickets(conn: Connection, ticket_ids: list[int], store: Store | None = None) -> tuple[Counts, set[str]]:
    """Delete the tickets and every row hanging off them, in this transaction;
    then the people no longer referenced, and (with ``store``) the blobs no
    attachment references any more.  Returns the counts and those blobs."""
    c = Counts()
    if not ticket_ids:
        return c, set()
    action_ids: list[int] = []
    for chunk in _chunks(ticket_ids):
        action_ids += conn.execute(select(_A.c.id).where(_A.c.ticket_id.in_(chunk))).scalars().all()
    people = _people_of(conn, ticket_ids, action_ids)
    shas: set[str] = set()
    # Children before parents: the foreign keys are enforced (SQLite
    # foreign_keys=ON, PostgreSQL always).
    for chunk in _chunks(action_ids):
        shas.update(conn.execute(select(_AT.c.sha256).where(_AT.c.action_id.in_(chunk))).scalars())
        c.attachments += conn.execute(delete(_AT).where(_AT.c.action_id.in_(chunk))).rowcount or 0
        c.message_ids += conn.execute(delete(_M).where(_M.c.action_id.in_(chunk))).rowcount or 0
        c.outbox += conn.execute(delete(_O).where(_O.c.action_id.in_(chunk))).rowcount or 0
    for chunk in _chunks(ticket_ids):
        c.message_ids += conn.execute(delete(_M).where(_M.c.ticket_id.in_(chunk))).rowcount or 0
        c.outbox += conn.execute(delete(_O).where(_O.c.ticket_id.in_(chunk))).rowcount or 0
        c.participants += conn.execute(delete(_P).where(_P.c.ticket_id.in_(chunk))).rowcount or 0
        c.actions += conn.execute(delete(_A).where(_A.c.ticket_id.in_(chunk))).rowcount or 0
        c.tickets += conn.execute(delete(_T).where(_T.c.id.in_(chunk))).rowcount or 0
    c.people = drop_unreferenced_people(conn, people)
    free = unreferenced_blobs(conn, shas)
    c.blobs = drop_blobs(store, conn, free) if store is not None else len(free)
    return c, free


# PostgreSQL: serialization_failure, deadlock_detected, lock_not_available
# (lock_timeout): the batch is rolled back whole and tried again.
RETRY_SQLSTATES = {"40001", "40P01", "55P03"}
ATTEMPTS = 3


def _retrying(store: Store, work: Callable[[Connection], T], sleep: Callable[[float], None]) -> T:
    """``work`` in one write transaction, tried again when it lost a race:
    a message recorded meanwhile referenced a person the batch was about
    to delete (a foreign key violation at the DELETE, once that message
    committed), or the database's lock and deadlock errors."""
    last: Exception | None = None
    for attempt in range(ATTEMPTS):
        try:
            with store._write() as conn:
                return work(conn)
        except sa_exc.IntegrityError as e:
            last = e
        except StoreUnavailable as e:
            state = getattr(getattr(e.__cause__, "orig", None), "sqlstate", None)
            if state not in RETRY_SQLSTATES:
                raise
            last = e
        log.info("purge: batch tried again after a lost race (%s)", str(last).splitlines()[0])
        sleep(PAUSE * (attempt + 1))
    raise StoreUnavailable(f"purge: gave up after {ATTEMPTS} attempts: {last}") from last


def _batch(store: Store, before: datetime, limit: int, sleep: Callable[[float], None]) -> tuple[Counts, set[str]]:
    def work(conn: Connection) -> tuple[Counts, set[str]]:
        select_batch = CANDIDATES
        if conn.dialect.name == "postgresql":
            # A ticket a message is being recorded on right now stays for
            # the next run instead of making the purge wait for it.
            select_batch = CANDIDATES.with_for_update(skip_locked=True, of=_T)
        ids = list(conn.execute(select_batch, {"before": before, "limit": limit}).scalars())
        return delete_tickets(conn, ids, store)

    return _retrying(store, work, sleep)


def purge_closed(
    store: Store,
    before: datetime,
    *,
    batch: int = BATCH,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[Counts], None] | None = None,
) -> Counts:
    """Remove tickets closed and last updated before ``before``; see the module docstring."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    total = Counts()
    while True:
        started = time.monotonic()
        counts, _free = _batch(store, before, batch, sleep)
        elapsed = time.monotonic() - started
        total.add(counts)
        if counts.tickets:
            log.info("purge: batch %s ms=%d", counts.summary(), int(elapsed * 1000))
            if progress is not None:
                progress(total)
        if counts.tickets < batch:
            sweep_pending(store)  # files an earlier run kept for being recent
            return total
        # As long as the batch took, at least PAUSE: writers that queued
        # behind it (the SQLite lock, PostgreSQL row locks) go first.
        sleep(max(PAUSE, elapsed))


def sweep_pending(store: Store) -> int:
    """Remove the blob files an earlier removal kept for being recent
    (``blobs.directory.PENDING_FILE``) once they are old and no attachment
    references them; returns how many went."""
    root = Path(store.attachments)
    if not root.is_dir():
        return 0
    earlier = pending(root)
    if not earlier:
        return 0

    def still_referenced(sha: str) -> bool:
        with store.session(read_only=True) as s:
            return s.execute(select(_AT.c.id).where(_AT.c.sha256 == sha).limit(1)).first() is not None

    gone, recent = unlink_unused(root, earlier, still_referenced)
    # Merged with what was added meanwhile, minus what this sweep settled.
    save_pending(root, (pending(root) - earlier) | recent)
    return gone


def count_closed(store: Store, before: datetime) -> Counts:
    """What ``purge_closed(store, before)`` would remove now (a dry run)."""
    return _count(store, _EXPIRED, {"before": before})


def _referenced(where: Any) -> Select:
    """Everyone the tickets matching ``where`` reference (a set of ids)."""
    refs = union(
        select(_T.c.requester_id.label("id")).where(where),
        select(_T.c.owner_id).where(where, _T.c.owner_id.is_not(None)),
        select(_A.c.author_id).join(_T, _T.c.id == _A.c.ticket_id).where(where, _A.c.author_id.is_not(None)),
        select(_P.c.person_id).join(_T, _T.c.id == _P.c.ticket_id).where(where),
    ).subquery()
    return select(refs.c.id)


def _shas(where: Any) -> Select:
    """The blobs the tickets matching ``where`` have."""
    return select(_AT.c.sha256).join(_A, _A.c.id == _AT.c.action_id).join(_T, _T.c.id == _A.c.ticket_id).where(where)


def _count(store: Store, doomed_where: Any, params: dict[str, Any]) -> Counts:
    """Counts of what removing the tickets matching ``doomed_where`` (a
    condition on the tickets table) removes.  People and blobs are set
    differences (referenced by those tickets, EXCEPT referenced by the
    others): each side is read once, not once per person."""
    c = Counts()
    with store.session(read_only=True) as s:
        conn = s.connection()

        def n(stmt) -> int:
            return int(conn.execute(stmt, params).scalar() or 0)

        doomed = select(_T.c.id).where(doomed_where).scalar_subquery()
        doomed_actions = select(_A.c.id).where(_A.c.ticket_id.in_(doomed)).scalar_subquery()
        c.tickets = n(select(func.count()).select_from(_T).where(doomed_where))
        c.actions = n(select(func.count()).select_from(_A).where(_A.c.ticket_id.in_(doomed)))
        c.attachments = n(select(func.count()).select_from(_AT).where(_AT.c.action_id.in_(doomed_actions)))
        c.message_ids = n(select(func.count()).select_from(_M).where(or_(_M.c.ticket_id.in_(doomed), _M.c.action_id.in_(doomed_actions))))
        c.outbox = n(select(func.count()).select_from(_O).where(or_(_O.c.ticket_id.in_(doomed), _O.c.action_id.in_(doomed_actions))))
        c.participants = n(select(func.count()).select_from(_P).where(_P.c.ticket_id.in_(doomed)))
        kept = not_(doomed_where)
        c.people = n(select(func.count()).select_from(except_(_referenced(doomed_where), _referenced(kept)).subquery()))
        c.blobs = n(select(func.count()).select_from(except_(_shas(doomed_where), _shas(kept)).subquery()))
    return c


# --- one person (GDPR erasure) ------------------------------------------------


@dataclass
class Forgotten:
    """What ``forget_person`` did (or, for a dry run, would do)."""

    address: str
    found: bool = False
    purged: Counts | None = None  # the tickets they requested, removed whole
    erased_actions: int = 0  # their actions on other tickets, texts erased
    rewritten_actions: int = 0  # other actions whose text named their address
    participations: int = 0
    outbox: int = 0
    person: str = ""  # "deleted" | "anonymised" | ""

    def summary(self) -> str:
        parts = [f"address={self.address}"]
        if not self.found:
            return parts[0] + " found=no"
        parts.append(f"requested_tickets_purged={self.purged.tickets if self.purged else 0}")
        parts += [
            f"actions_erased={self.erased_actions}",
            f"actions_rewritten={self.rewritten_actions}",
            f"participations={self.participations}",
            f"outbox={self.outbox}",
            f"person={self.person or 'kept'}",
        ]
        return " ".join(parts)


ERASED = "[erased at the author's request]"


def placeholder(person_id: int) -> str:
    return f"forgotten-{person_id}@invalid"


def forget_person(
    store: Store,
    address: str,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
    sleep: Callable[[float], None] = time.sleep,
) -> Forgotten:
    """Erase ``address`` from the store; see the module docstring."""
    address = address.strip().lower()
    out = Forgotten(address)
    with store.session(read_only=True) as s:
        conn = s.connection()
        pid = conn.execute(select(_PE.c.id).where(_PE.c.address == address)).scalar()
    if pid is None:
        return out
    out.found = True
    requested = select(_T.c.id).where(_T.c.requester_id == pid)
    if dry_run:
        out.purged = _count(store, _T.c.requester_id == pid, {})
        with store.session(read_only=True) as s:
            conn = s.connection()
            others = ~_A.c.ticket_id.in_(requested.scalar_subquery())
            out.erased_actions = int(conn.execute(select(func.count()).select_from(_A).where(_A.c.author_id == pid, others)).scalar() or 0)
            out.participations = int(
                conn.execute(select(func.count()).select_from(_P).where(_P.c.person_id == pid, ~_P.c.ticket_id.in_(requested.scalar_subquery()))).scalar()
                or 0
            )
            out.outbox = int(conn.execute(select(func.count()).select_from(_O).where(func.lower(_O.c.recipient) == address, ~_O.c.ticket_id.in_(requested.scalar_subquery()))).scalar() or 0)
        return out
    # 1. The tickets they requested, whole, in batches.
    out.purged = Counts()
    while True:
        started = time.monotonic()

        def work(conn: Connection) -> tuple[Counts, set[str]]:
            ids = list(conn.execute(requested.order_by(_T.c.id).limit(batch)).scalars())
            return delete_tickets(conn, ids, store)

        counts, _free = _retrying(store, work, sleep)
        out.purged.add(counts)
        if counts.tickets < batch:
            break
        sleep(max(PAUSE, time.monotonic() - started))
    # 2. Their traces on other people's tickets, in one transaction.
    with store._write() as conn:
        if conn.execute(select(_PE.c.id).where(_PE.c.id == pid)).scalar() is None:
            out.person = "deleted"  # only their own tickets referenced them
            return out
        mine = list(conn.execute(select(_A.c.id).where(_A.c.author_id == pid)).scalars())
        tickets = sorted(
            set(conn.execute(select(_A.c.ticket_id).where(_A.c.author_id == pid)).scalars())
            | set(conn.execute(select(_P.c.ticket_id).where(_P.c.person_id == pid)).scalars())
        )
        shas: set[str] = set()
        for chunk in _chunks(mine):
            shas.update(conn.execute(select(_AT.c.sha256).where(_AT.c.action_id.in_(chunk))).scalars())
            conn.execute(delete(_AT).where(_AT.c.action_id.in_(chunk)))
            conn.execute(delete(_M).where(_M.c.action_id.in_(chunk)))
            out.erased_actions += (
                conn.execute(update(_A).where(_A.c.id.in_(chunk)).values(text=ERASED, new_text=ERASED, html="", message_id="", delivered_to="")).rowcount or 0
            )
        gone = placeholder(pid)
        for chunk in _chunks(tickets):
            # Quotes of their mail in others' replies name them ("... wrote:").
            named = and_(
                _A.c.ticket_id.in_(chunk),
                or_(*(func.lower(col).contains(address, autoescape=True) for col in (_A.c.text, _A.c.new_text, _A.c.html, _A.c.delivered_to))),
            )
            rows = conn.execute(select(_A.c.id, _A.c.text, _A.c.new_text, _A.c.html, _A.c.delivered_to).where(named)).all()
            for a_id, text, new_text, html, delivered in rows:
                conn.execute(
                    update(_A)
                    .where(_A.c.id == a_id)
                    .values(
                        text=_replace(text, address, gone),
                        new_text=_replace(new_text, address, gone),
                        html=_replace(html, address, gone),
                        delivered_to=" ".join(a for a in (delivered or "").split() if a.lower() != address),
                    )
                )
            out.rewritten_actions += len(rows)
        out.participations = conn.execute(delete(_P).where(_P.c.person_id == pid)).rowcount or 0
        # Mail to them: nothing more goes; what went keeps no address.
        out.outbox = conn.execute(delete(_O).where(func.lower(_O.c.recipient) == address, _O.c.state.in_(PENDING))).rowcount or 0
        out.outbox += conn.execute(update(_O).where(func.lower(_O.c.recipient) == address).values(recipient=gone)).rowcount or 0
        if drop_unreferenced_people(conn, [pid]):
            out.person = "deleted"
        else:
            conn.execute(update(_PE).where(_PE.c.id == pid).values(address=gone, name=""))
            out.person = "anonymised"
        drop_blobs(store, conn, unreferenced_blobs(conn, shas))
    return out


def _replace(value: str | None, address: str, gone: str) -> str:
    """``value`` with every spelling (any case) of ``address`` replaced."""
    if not value:
        return value or ""
    import re

    return re.sub(re.escape(address), gone, value, flags=re.IGNORECASE)
