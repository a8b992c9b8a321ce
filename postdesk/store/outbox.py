"""The notifier's SQL: claim due outbox rows, load them, record what happened.

Only ``postdesk/store`` imports SQLAlchemy, so the worker
(``postdesk.notifier.worker``) calls these functions and gets plain
dataclasses back (``postdesk.outbox_rows``).  Each function is one short
transaction; no transaction stays open while a mail is on the wire.  This
module decides nothing about who gets mail: it loads what the notifier's
policy (``postdesk.notifier.policy``) needs, and saves what it decided
(suppressed, deferred) with the sending results.

Claiming.  A row is due when it is ``queued`` with ``due_at <= now``, or
``sending`` with a lease that ran out (its worker died mid-pass: crash
safety).  ``claim`` selects due rows ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (two notifiers never wait on, nor take, each other's rows; SQLite
ignores the clause and serialises writers with BEGIN IMMEDIATE instead), then
flips each with a compare-and-set UPDATE that repeats the due condition, so
a row is claimed by one worker even without row locks.  Every claim bumps
``attempts``; that number is the worker's fencing token: results are written
only ``WHERE attempts = token``, so a worker whose lease expired and whose
row was claimed again cannot overwrite the newer claim.

Batches.  The worker loads a claimed batch with ``load`` (a few
queries for the whole batch) and writes its results with ``record`` (one
transaction, executemany), so the database costs a few commits per batch,
not per mail.

Duplicates.  A mail can go twice in two ways, both rare; closing them
would need two-phase commit with Postfix, and a rare duplicate notification
is the accepted price of never losing one:

- the store side: the SMTP server accepted mails (250) and the worker died
  before ``record`` committed their batch.  The leases then run out and
  those rows are sent again: at most the one batch being sent (the worker
  records each batch before it claims the next; results it could not write
  because the store was down are written first on its next pass).
- the SMTP side: the connection dropped, or timed out, after a mail was
  written in full and before its final reply was read.  Postfix may have
  queued it; it is retried.  The worker has one mail in flight at a time
  (``postdesk.notifier.smtp``), so this is at most one mail per failed
  connection; every mail answered before it is recorded as sent, and a
  mail whose write failed never reached the server whole and cannot have
  been queued.  Its last_error says "it may have been queued".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, selectinload

from postdesk.config import Config
from postdesk.outbox_rows import (
    AckHistory,
    ActionRow,
    AttachmentInfo,
    Claimed,
    Defer,
    Done,
    Job,
    ParticipantRow,
    PastUpdate,
    Person,
    Skip,
)
from postdesk.store.errors import unavailable_on_failure
from postdesk.store.models import Action, MessageId, Outbox, Participant, Ticket
from postdesk.store.models import Person as PersonRow
from postdesk.store.text import KEY_MAX

BACKOFF_FIRST = 60.0  # seconds; doubles per attempt
BACKOFF_MAX = 3600.0


def _due(now: datetime):
    return or_(
        and_(Outbox.state == "queued", Outbox.due_at <= now),
        and_(Outbox.state == "sending", Outbox.lease_until <= now),
    )


def _mine(row_id: int, token: int):
    return and_(Outbox.id == row_id, Outbox.state == "sending", Outbox.attempts == token)


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones."""
    return min(BACKOFF_FIRST * 2 ** max(0, attempts - 1), BACKOFF_MAX)


def claim(store, now: datetime, lease: float, limit: int = 20) -> list[tuple[int, int]]:
    """Claim up to ``limit`` due rows; returns (row id, token) pairs, oldest due first."""
    until = now + timedelta(seconds=lease)
    with unavailable_on_failure("outbox"), store.session() as s:
        ids = s.scalars(
            select(Outbox.id)
            .where(_due(now))
            .order_by(Outbox.due_at, Outbox.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not ids:
            return []
        # Compare-and-set: the due condition again, so a row another worker
        # claimed meanwhile (SQLite without row locks) is not claimed twice.
        got = dict(
            s.execute(
                update(Outbox)
                .where(Outbox.id.in_(ids), _due(now))
                .values(state="sending", lease_until=until, attempts=Outbox.attempts + 1)
                .returning(Outbox.id, Outbox.attempts)
                .execution_options(synchronize_session=False)
            ).all()
        )
        return [(row_id, got[row_id]) for row_id in ids if row_id in got]


# --- loading -------------------------------------------------------------------


def _person(row: PersonRow | None) -> Person | None:
    if row is None:
        return None
    return Person(address=row.address, name=row.name or "", staff=bool(row.staff))


def _action_row(a: Action) -> ActionRow:
    return ActionRow(
        id=a.id,
        kind=a.kind,
        public=bool(a.public),
        author=_person(a.author),
        text=a.text or "",
        new_text=a.new_text or "",
        created_at=a.created_at,
        flags=frozenset((a.flags or "").split()),
        message_id=a.message_id or "",
        delivered_to=frozenset((a.delivered_to or "").lower().replace(",", " ").split()),
        attachments=tuple(
            AttachmentInfo(
                id=x.id,
                filename=x.filename or "",
                content_type=x.content_type or "application/octet-stream",
                size=x.size,
                sha256=x.sha256,
                content_id=x.content_id or "",
                inline=bool(x.inline),
            )
            for x in a.attachments
        ),
        html=a.html or "",
    )


def load(store, claims, config: Config, now: datetime) -> tuple[list[Claimed | None], AckHistory]:
    """Load claimed rows, in one transaction, with what the notifier's policy
    needs to decide about them (``postdesk.notifier.policy``), and the
    acknowledgement history the rate limits count.

    None for a row that is no longer ours (our lease ran out and another
    worker claimed it).  Also renews our leases, so a long pass keeps its
    rows.  Writes nothing else: what is decided is saved by ``record``.
    """
    until = now + timedelta(seconds=config.notifier.lease)
    claims = [tuple(c) for c in claims]
    with unavailable_on_failure("outbox"), store.session() as s:
        ours = set(
            s.scalars(
                update(Outbox)
                .where(tuple_(Outbox.id, Outbox.attempts).in_(claims), Outbox.state == "sending")
                .values(lease_until=until)
                .returning(Outbox.id)
                .execution_options(synchronize_session=False)
            ).all()
        ) if claims else set()
        rows = {r.id: r for r in s.scalars(select(Outbox).where(Outbox.id.in_(ours)))} if ours else {}
        pre = _Preload.load(s, list(rows.values()), config, now)
        loaded = [_claimed(s, rows[row_id], pre) if row_id in rows else None for row_id, _token in claims]
        return loaded, pre.ack_history(set(rows))


class _Preload:
    """What a batch of rows needs, loaded with a few queries instead of a few
    per row (the notifier's throughput is mostly round trips to the database).
    Holding the objects also keeps them in the session's identity map, so
    ``session.get`` and the relationships below issue no SQL."""

    def __init__(self) -> None:
        self.keep: list = []
        self.people: dict[str, PersonRow] = {}
        self.first_action: dict[int, int] = {}
        self.acks_sent: dict[str, int] = {}
        self.acks_sending: list[tuple[int, str]] = []
        self.updates_sent: dict[int, list[tuple[str, datetime]]] = {}  # ticket -> (recipient, sent_at)

    @classmethod
    def load(cls, s: Session, rows: list[Outbox], config: Config, now: datetime) -> _Preload:
        pre = cls()
        if not rows:
            return pre
        ticket_ids = {r.ticket_id for r in rows}
        pre.keep += s.scalars(select(Ticket).where(Ticket.id.in_(ticket_ids))).all()
        action_ids = {r.action_id for r in rows if r.action_id}
        if action_ids:
            pre.keep += s.scalars(
                select(Action).where(Action.id.in_(action_ids)).options(selectinload(Action.author), selectinload(Action.attachments))
            ).all()
        addresses = {(r.recipient or "").strip().lower() for r in rows}
        pre.people = {p.address: p for p in s.scalars(select(PersonRow).where(PersonRow.address.in_(addresses)))}
        alerts = {r.ticket_id for r in rows if r.kind in ("alert", "bounce-alert")}
        if alerts:
            pre.first_action = dict(
                s.execute(select(Action.ticket_id, func.min(Action.id)).where(Action.ticket_id.in_(alerts), Action.kind == "message").group_by(Action.ticket_id)).all()
            )
        if any(r.kind == "ack" for r in rows):
            # Every sender's, not only this batch's: the global cap counts them
            # all, and plus-address variants count as one sender.
            since = now - timedelta(seconds=config.notifier.ack_window)
            pre.acks_sent = dict(
                s.execute(
                    select(Outbox.recipient, func.count(Outbox.id))
                    .where(Outbox.kind == "ack", Outbox.state == "sent", Outbox.sent_at > since)
                    .group_by(Outbox.recipient)
                ).all()
            )
            pre.acks_sending = [(i, r) for i, r in s.execute(select(Outbox.id, Outbox.recipient).where(Outbox.kind == "ack", Outbox.state == "sending"))]
        updates = {r.ticket_id for r in rows if r.kind == "update"}
        if updates:
            since = now - timedelta(seconds=config.notifier.update_window)
            for t_id, recipient, at in s.execute(
                select(Outbox.ticket_id, Outbox.recipient, Outbox.sent_at).where(
                    Outbox.ticket_id.in_(updates), Outbox.kind == "update", Outbox.state == "sent", Outbox.sent_at > since
                )
            ):
                if at is not None:
                    pre.updates_sent.setdefault(t_id, []).append((recipient, at))
        return pre

    def person(self, address: str) -> Person:
        return _person(self.people.get(address)) or Person(address=address)

    def ack_history(self, batch: set[int]) -> AckHistory:
        return AckHistory(sent=self.acks_sent, in_flight=tuple((i, r) for i, r in self.acks_sending if i not in batch))


def _claimed(s: Session, row: Outbox, pre: _Preload) -> Claimed:
    ticket = s.get(Ticket, row.ticket_id)
    assert ticket is not None  # a foreign key
    to = (row.recipient or "").strip().lower()
    base = Claimed(
        row_id=row.id,
        token=row.attempts,
        kind=row.kind,
        ticket_id=ticket.id,
        ticket=ticket.number,
        subject=ticket.subject or "",
        status=ticket.status,
        visible=bool(ticket.visible_to_customers),
        recipient=pre.person(to),
        created_at=row.created_at,
        department=ticket.department or "",
        language=ticket.language or "",
    )
    if row.kind in ("ack", "alert", "bounce-alert", "refusal"):
        action = s.get(Action, row.action_id) if row.action_id else None
        base = replace(base, action=_action_row(action) if action else None, first_action_id=pre.first_action.get(ticket.id, 0))
    if row.kind not in ("update", "reminder", "refusal"):
        return base
    part = s.execute(
        select(Participant, PersonRow)
        .join(PersonRow, Participant.person_id == PersonRow.id)
        .where(Participant.ticket_id == ticket.id, PersonRow.address == to)
    ).first()
    if part is None:
        return base
    participant, person = part
    mark = participant.last_update_action_id or 0
    row_of_participant = ParticipantRow(
        role=participant.role,
        staff=bool(person.staff),
        last_update_action_id=mark,
        last_message_id=participant.last_message_id or "",
    )
    if row.kind != "update":
        # A reminder or a refusal: the participant only for In-Reply-To
        # (their newest message on the ticket, which the mail is about).
        return replace(base, participant=row_of_participant)
    past = tuple(
        PastUpdate(since_action_id=since or 0, action_ids=frozenset(int(i) for i in (ids or "").split() if i.isdigit()))
        for ids, since in s.execute(
            select(Outbox.action_ids, Outbox.since_action_id).where(
                Outbox.ticket_id == ticket.id,
                Outbox.recipient == row.recipient,
                Outbox.kind == "update",
                Outbox.state.in_(("sent", "suppressed", "failed")),
                Outbox.up_to_action_id > 0,
            )
        )
    )
    # Everything after the mark, and below it only the messages no settled
    # update carried (the policy's "late" rule decides which of those go):
    # a long ticket's history is not loaded for every update.
    floor = min([mark] + [p.since_action_id for p in past])
    told = set().union(*(p.action_ids for p in past)) if past else set()
    below = and_(Action.id > floor, Action.kind == "message")
    if told:
        below = and_(below, Action.id.not_in(told))
    candidates = s.scalars(
        select(Action)
        .where(Action.ticket_id == ticket.id, or_(Action.id > mark, below), Action.public.is_(True), Action.kind.in_(("message", "status")))
        .order_by(Action.id)
        .options(selectinload(Action.author), selectinload(Action.attachments))
    ).all()
    return replace(
        base,
        recipient=Person(address=person.address, name=person.name or "", staff=bool(person.staff)),
        participant=row_of_participant,
        candidates=tuple(_action_row(a) for a in candidates),
        past=past,
        sent_in_window=tuple(at for r, at in pre.updates_sent.get(ticket.id, []) if r == row.recipient),
    )

# --- results -------------------------------------------------------------------


def record(store, done: list[Done | Skip | Defer], config: Config, now: datetime | None = None) -> list[tuple[str, float]]:
    """Record the results of a batch in one transaction (one commit, not one per mail).

    ``done`` holds what was sent or failed (``Done``) and what the policy
    held back (``Skip``: suppressed; ``Defer``: queued again at its
    ``until``).  Returns, per item, (state, seconds): ("sent", 0),
    ("deferred", delay), ("failed", 0), ("suppressed", 0), or ("lost", 0)
    when the row was no longer ours.  Grouping the commits widens the
    store-side duplicate window described above from one mail to one batch;
    the worker records each batch as soon as it is sent.
    """
    out: list[tuple[str, float]] = []
    t = cast(Table, Outbox.__table__)
    with unavailable_on_failure("outbox"), store.session() as s:
        # Lock our rows (PostgreSQL) so no claim slips in between check and write.
        rows = {
            r.id: r
            for r in s.execute(
                select(t.c.id, t.c.state, t.c.attempts, t.c.ticket_id, t.c.action_id)
                .where(t.c.id.in_({_ids(d)[0] for d in done}))
                .with_for_update()
            )
        }
        others = [_ids(d)[0] for d in done if not (isinstance(d, Done) and d.status == "sent")]
        keep = s.scalars(select(Outbox).where(Outbox.id.in_(others))).all() if others else []  # noqa: F841 (identity map)
        keys = {d.message_id.strip("<>")[:KEY_MAX] for d in done if isinstance(d, Done) and d.status == "sent"}
        seen = set(s.scalars(select(MessageId.key).where(MessageId.key.in_(keys)))) if keys else set()
        sent: list[dict] = []
        ids: list[dict] = []
        for d in done:
            if isinstance(d, Skip):
                out.append(_suppressed(s, d))
            elif isinstance(d, Defer):
                out.append(_deferred(s, d, now or d.until))
            elif d.status == "sent":
                out.append(_sent(s, d, rows.get(d.job.row_id), seen, sent, ids))
            elif d.status == "retry":
                out.append(_retry(s, d, config))
            else:
                out.append(_failed(s, d))
        # The hot path, as two executemany statements rather than per-row ORM
        # work: a batch's bookkeeping costs about as much as one row's did.
        if sent:
            s.execute(
                t.update()
                .where(t.c.id == bindparam("b_id"), t.c.state == "sending", t.c.attempts == bindparam("b_token"))
                .values(
                    state="sent",
                    sent_at=bindparam("b_at"),
                    message_id=bindparam("b_msgid"),
                    queue_id=bindparam("b_qid"),
                    lease_until=None,
                    last_error="",
                    up_to_action_id=bindparam("b_up_to"),
                    action_ids=bindparam("b_carried"),
                    since_action_id=bindparam("b_since"),
                ),
                sent,
            )
        if ids:
            s.execute(cast(Table, MessageId.__table__).insert(), ids)
    return out


def _row(s: Session, item) -> Outbox | None:
    row_id, token = _ids(item)
    row = s.get(Outbox, row_id)
    if row is None or row.state != "sending" or row.attempts != token:
        return None
    return row


def _advance(s: Session, ticket_id: int, recipient: str, up_to: int) -> None:
    """Move a participant's mark forward (never back) to ``up_to``."""
    s.execute(
        update(Participant)
        .where(
            Participant.ticket_id == ticket_id,
            Participant.person_id == select(PersonRow.id).where(PersonRow.address == recipient).scalar_subquery(),
            Participant.last_update_action_id < up_to,
        )
        .values(last_update_action_id=up_to)
        .execution_options(synchronize_session=False)
    )


def _suppressed(s: Session, d: Skip) -> tuple[str, float]:
    """A row the policy holds back for good; an update whose news the
    recipient has is accounted for as if sent (their mark advances)."""
    row = _row(s, d)
    if row is None:
        return ("lost", 0.0)
    row.state = "suppressed"
    row.last_error = d.reason[:2000]
    row.lease_until = None
    if d.advance:
        row.up_to_action_id = d.up_to_action_id
        row.since_action_id = d.since_action_id
        row.action_ids = " ".join(map(str, d.action_ids))
        _advance(s, row.ticket_id, d.recipient, d.up_to_action_id)
    return ("suppressed", 0.0)


def _deferred(s: Session, d: Defer, now: datetime) -> tuple[str, float]:
    """A row a rate limit holds: queued again, due when the window allows."""
    row = _row(s, d)
    if row is None:
        return ("lost", 0.0)
    row.state = "queued"
    row.due_at = d.until
    row.lease_until = None
    row.last_error = d.reason[:2000]
    return ("deferred", max(0.0, (d.until - now).total_seconds()))


def _sent(s: Session, d: Done, row, seen: set[str], sent: list[dict], ids: list[dict]) -> tuple[str, float]:
    """A delivered mail.  Our Message-ID goes into message_ids (ours=True), so
    a reply that keeps only In-Reply-To/References threads onto the ticket."""
    job = d.job
    if row is None:
        return ("lost", 0.0)
    ours = row.state == "sending" and row.attempts == job.token
    if ours:
        sent.append(
            {
                "b_id": job.row_id,
                "b_token": job.token,
                "b_at": d.at,
                "b_msgid": d.message_id,
                "b_qid": d.queue_id[:64],
                "b_up_to": job.up_to_action_id,
                "b_carried": " ".join(str(e.id) for e in job.entries) if job.kind == "update" else "",
                "b_since": job.since_action_id,
            }
        )
    # Even when another worker took the row over, this mail went out: record
    # its Message-ID so a reply to it still threads.
    key = d.message_id.strip("<>")[:KEY_MAX]
    if key and key not in seen:
        seen.add(key)
        ids.append({"key": key, "ticket_id": row.ticket_id, "action_id": job.up_to_action_id or row.action_id, "ours": True, "created_at": d.at})
    if job.kind == "update":
        _advance(s, row.ticket_id, job.recipient.address, job.up_to_action_id)
    return ("sent", 0.0) if ours else ("lost", 0.0)


def _retry(s: Session, d: Done, config: Config) -> tuple[str, float]:
    """A temporary failure: queued again after a backoff, failed when too old."""
    row = _row(s, d.job)
    if row is None:
        return ("lost", 0.0)
    if (d.at - row.created_at).total_seconds() >= config.notifier.retry_max_age:
        _fail(s, row, f"gave up after {row.attempts} attempts: {d.error}", d.at, d.job)
        return ("failed", 0.0)
    delay = backoff(row.attempts)
    row.state = "queued"
    row.due_at = d.at + timedelta(seconds=delay)
    row.lease_until = None
    row.last_error = d.error[:2000]
    return ("deferred", delay)


def _failed(s: Session, d: Done) -> tuple[str, float]:
    """A permanent failure (5xx): the row is failed and the ticket says so, privately."""
    row = _row(s, d.job)
    if row is None:
        return ("lost", 0.0)
    _fail(s, row, d.error, d.at, d.job)
    return ("failed", 0.0)


def _fail(s: Session, row: Outbox, error: str, now: datetime, job: Job | None = None) -> None:
    row.state = "failed"
    row.lease_until = None
    row.last_error = error[:2000]
    if job is not None and job.kind == "update":
        # What this update carried is accounted for: a mail that failed for
        # good (a 5xx, or a compose error) fails the same way every time, so
        # carrying it into the recipient's next update would block every
        # later one.  Staff see the failure on the ticket (below).
        row.up_to_action_id = job.up_to_action_id
        row.since_action_id = job.since_action_id
        row.action_ids = " ".join(str(e.id) for e in job.entries)
        _advance(s, row.ticket_id, job.recipient.address, job.up_to_action_id)
    # A private system action: staff see it on the ticket; customers never do.
    s.add(
        Action(
            ticket_id=row.ticket_id,
            author_id=None,
            kind="system",
            public=False,
            text=f"The {row.kind} notification to {row.recipient} failed: {error}"[:10000],
            new_text="",
            flags="notifier failed",
            message_id="",
            queue_id="",
            delivered_to="",
            created_at=now,
        )
    )


def release(store, claims) -> int:
    """Give claimed rows back unsent (SIGTERM, lost connection): queued as they were."""
    n = 0
    with unavailable_on_failure("outbox"), store.session() as s:
        for c in claims:
            row_id, token = _ids(c)
            n += s.execute(update(Outbox).where(_mine(row_id, token)).values(state="queued", lease_until=None)).rowcount
    return n


def _ids(item) -> tuple[int, int]:
    """(row id, token) of a claim, a Job, a Done, a Skip or a Defer."""
    if isinstance(item, tuple):
        return item
    if isinstance(item, Done):
        item = item.job
    return item.row_id, item.token


__all__ = ["backoff", "claim", "load", "record", "release"]
