"""The notifier's SQL: claim due outbox rows, load them, record what happened.

Only ``postdesk/store`` imports SQLAlchemy, so the worker
(``postdesk.notifier.worker``) calls these functions and gets plain
dataclasses back (``postdesk.notifier.jobs``).  Each function is one short
transaction; no transaction stays open while a mail is on the wire.

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

The one duplicate window: the SMTP server accepted the mail (250) and the
worker died before ``mark_sent`` committed.  The lease then runs out and the
row is sent again.  Closing it would need two-phase commit with Postfix;
a rare duplicate notification is the accepted price of never losing one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from postdesk.config import Config
from postdesk.notifier.jobs import AttachmentInfo, Entry, Job, Person, Skip
from postdesk.store.errors import unavailable_on_failure
from postdesk.store.models import Action, MessageId, Outbox, Participant, Ticket
from postdesk.store.models import Person as PersonRow
from postdesk.store.text import KEY_MAX

# Flags of actions that must never get an auto-reply (RFC 3834 section 2).
NO_ACK_FLAGS = frozenset({"auto", "list", "bounce", "loop"})
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
        claimed = []
        for row_id in ids:
            token = s.execute(
                update(Outbox)
                .where(Outbox.id == row_id, _due(now))
                .values(state="sending", lease_until=until, attempts=Outbox.attempts + 1)
                .returning(Outbox.attempts)
            ).scalar_one_or_none()
            if token is not None:
                claimed.append((row_id, token))
        return claimed


# --- loading -------------------------------------------------------------------


def _person(row: PersonRow | None) -> Person | None:
    if row is None:
        return None
    return Person(address=row.address, name=row.name or "", staff=bool(row.staff))


def _entry(action: Action) -> Entry:
    return Entry(
        id=action.id,
        kind=action.kind,
        public=bool(action.public),
        author=_person(action.author),
        # The new text has quoted history and signature removed; fall back to
        # the whole text when the filter found nothing new (e.g. a status action).
        text=action.new_text if (action.new_text or "").strip() else (action.text or ""),
        created_at=action.created_at,
        flags=frozenset((action.flags or "").split()),
        attachments=tuple(
            AttachmentInfo(
                id=a.id,
                filename=a.filename or "",
                content_type=a.content_type or "application/octet-stream",
                size=a.size,
                sha256=a.sha256,
                content_id=a.content_id or "",
            )
            for a in action.attachments
        ),
    )


def prepare(store, row_id: int, token: int, config: Config, now: datetime) -> Job | Skip | None:
    """Load claimed row ``row_id`` as a Job, or mark it suppressed and return a Skip.

    None: the row is no longer ours (our lease ran out and another worker
    claimed it).  Also renews our lease, so a long pass keeps its rows.
    """
    with unavailable_on_failure("outbox"), store.session() as s:
        renewed = s.execute(
            update(Outbox).where(_mine(row_id, token)).values(lease_until=now + timedelta(seconds=config.notifier.lease))
        ).rowcount
        if not renewed:
            return None
        row = s.get(Outbox, row_id)
        ticket = s.get(Ticket, row.ticket_id)
        if row.kind == "ack":
            result = _prepare_ack(s, row, ticket, config, now)
        elif row.kind == "alert":
            result = _prepare_alert(s, row, ticket, config)
        elif row.kind == "update":
            result = _prepare_update(s, row, ticket, config)
        else:
            result = f"unknown kind {row.kind!r}"
        if isinstance(result, str):
            row.state = "suppressed"
            row.last_error = result
            row.lease_until = None
            return Skip(row_id=row.id, kind=row.kind, ticket=ticket.number, recipient=row.recipient, reason=result)
        return result


def _job(row: Outbox, ticket: Ticket, recipient: Person, entries, **kw) -> Job:
    return Job(
        row_id=row.id,
        token=row.attempts,
        kind=row.kind,
        ticket=ticket.number,
        subject=ticket.subject or "",
        status=ticket.status,
        recipient=recipient,
        entries=tuple(entries),
        created_at=row.created_at,
        **kw,
    )


def _recipient(s: Session, address: str) -> Person:
    p = s.scalar(select(PersonRow).where(PersonRow.address == address.lower()))
    return _person(p) or Person(address=address.lower())


def _prepare_ack(s: Session, row: Outbox, ticket: Ticket, config: Config, now: datetime) -> Job | str:
    to = (row.recipient or "").strip().lower()
    # RFC 3834 section 2: never answer the null sender, nor ourselves.
    if not to or to in ("<>", "mailer-daemon", "postmaster") or to.startswith(("mailer-daemon@", "postmaster@")):
        return "null sender"
    if config.is_own_address(to):
        return "own address"
    action = s.get(Action, row.action_id) if row.action_id else None
    if action is None:
        return "action missing"
    flags = set((action.flags or "").split()) & NO_ACK_FLAGS
    if flags:
        return "auto-submitted (" + ",".join(sorted(flags)) + ")"
    limit = int(config.notifier.ack_limit)
    if limit == 0:
        return "acknowledgements off (ack_limit = 0)"
    since = now - timedelta(seconds=config.notifier.ack_window)
    # Sent within the window, plus older claims in flight (the lower row id
    # wins when two workers race for the same sender).
    count = s.scalar(
        select(func.count(Outbox.id)).where(
            Outbox.kind == "ack",
            Outbox.recipient == row.recipient,
            Outbox.id != row.id,
            or_(
                and_(Outbox.state == "sent", Outbox.sent_at > since),
                and_(Outbox.state == "sending", Outbox.id < row.id),
            ),
        )
    )
    if count >= limit:
        return f"rate limit ({count} acknowledgements to this sender in {int(config.notifier.ack_window)} s)"
    return _job(row, ticket, _recipient(s, to), [_entry(action)], in_reply_to=action.message_id or "", up_to_action_id=action.id)


def _prepare_alert(s: Session, row: Outbox, ticket: Ticket, config: Config) -> Job | str:
    to = (row.recipient or "").strip().lower()
    if not to or config.is_system_address(to):
        return "own address"  # a system address would turn the alert into a ticket
    action = s.get(Action, row.action_id) if row.action_id else None
    if action is None:
        return "action missing"
    first = s.scalar(select(func.min(Action.id)).where(Action.ticket_id == ticket.id))
    return _job(
        row,
        ticket,
        _recipient(s, to),
        [_entry(action)],
        in_reply_to=action.message_id or "",
        up_to_action_id=action.id,
        new_ticket=(action.id == first),
    )


def _prepare_update(s: Session, row: Outbox, ticket: Ticket, config: Config) -> Job | str:
    to = (row.recipient or "").strip().lower()
    if not ticket.visible_to_customers:
        # Not advancing last_update_action_id: if the ticket is made visible
        # later, the customer hears about everything since their last update.
        return "ticket not visible to customers"
    if not to or config.is_own_address(to):
        return "own address"
    part = s.execute(
        select(Participant, PersonRow)
        .join(PersonRow, Participant.person_id == PersonRow.id)
        .where(Participant.ticket_id == ticket.id, PersonRow.address == to)
    ).first()
    if part is None:
        return "not a participant"
    participant, person = part
    if participant.role == "staff" or person.staff or config.matches_staff(to):
        return "staff participant"
    since = participant.last_update_action_id or 0
    actions = s.scalars(
        select(Action)
        .where(
            Action.ticket_id == ticket.id,
            Action.id > since,
            Action.public.is_(True),
            Action.kind.in_(("message", "status")),
        )
        .order_by(Action.id)
    ).all()
    entries = []
    for a in actions:
        if a.author is not None and a.author.address == to:
            continue  # never their own words back to them
        if to in (a.delivered_to or "").lower().replace(",", " ").split():
            continue  # they got this message directly (To/Cc)
        if a.kind == "status" and not config.organization.status_change_emails:
            continue
        entries.append(_entry(a))
    up_to = max([since] + [a.id for a in actions])
    if not entries:
        # What is new is theirs or already theirs: mark it told.
        participant.last_update_action_id = up_to
        row.up_to_action_id = up_to
        return "nothing new for this recipient"
    return _job(
        row,
        ticket,
        _person(person),
        entries,
        in_reply_to=participant.last_message_id or "",
        up_to_action_id=up_to,
    )


# --- results -------------------------------------------------------------------


def mark_sent(store, job: Job, message_id: str, queue_id: str, now: datetime) -> bool:
    """Record a delivered mail.  False: the row was no longer ours (logged by the caller).

    Our Message-ID goes into message_ids (ours=True), so a reply that keeps
    only In-Reply-To/References threads onto the ticket.
    """
    with unavailable_on_failure("outbox"), store.session() as s:
        ours = s.execute(
            update(Outbox)
            .where(_mine(job.row_id, job.token))
            .values(
                state="sent",
                sent_at=now,
                message_id=message_id,
                queue_id=queue_id[:64],
                lease_until=None,
                last_error="",
                up_to_action_id=job.up_to_action_id,
            )
        ).rowcount
        row = s.get(Outbox, job.row_id)
        key = message_id.strip("<>")[:KEY_MAX]
        if row is not None and not s.scalar(select(MessageId.id).where(MessageId.key == key)):
            s.add(
                MessageId(
                    key=key,
                    ticket_id=row.ticket_id,
                    action_id=job.up_to_action_id or row.action_id,
                    ours=True,
                    created_at=now,
                )
            )
        if row is not None and job.kind == "update":
            s.execute(
                update(Participant)
                .where(
                    Participant.ticket_id == row.ticket_id,
                    Participant.person_id == select(PersonRow.id).where(PersonRow.address == job.recipient.address).scalar_subquery(),
                    Participant.last_update_action_id < job.up_to_action_id,
                )
                .values(last_update_action_id=job.up_to_action_id)
            )
        return bool(ours)


def mark_retry(store, job_or_claim, error: str, now: datetime, config: Config) -> tuple[str, float]:
    """A temporary failure: queue again after a backoff, or give up when too old.

    Returns ("deferred", seconds) or ("failed", 0).
    """
    row_id, token = _ids(job_or_claim)
    with unavailable_on_failure("outbox"), store.session() as s:
        row = s.get(Outbox, row_id)
        if row is None or row.state != "sending" or row.attempts != token:
            return ("lost", 0.0)
        if (now - row.created_at).total_seconds() >= config.notifier.retry_max_age:
            _fail(s, row, f"gave up after {row.attempts} attempts: {error}", now)
            return ("failed", 0.0)
        delay = backoff(row.attempts)
        row.state = "queued"
        row.due_at = now + timedelta(seconds=delay)
        row.lease_until = None
        row.last_error = error[:2000]
        return ("deferred", delay)


def mark_failed(store, job_or_claim, error: str, now: datetime) -> bool:
    """A permanent failure (5xx): the row is failed and the ticket says so, privately."""
    row_id, token = _ids(job_or_claim)
    with unavailable_on_failure("outbox"), store.session() as s:
        row = s.get(Outbox, row_id)
        if row is None or row.state != "sending" or row.attempts != token:
            return False
        _fail(s, row, error, now)
        return True


def _fail(s: Session, row: Outbox, error: str, now: datetime) -> None:
    row.state = "failed"
    row.lease_until = None
    row.last_error = error[:2000]
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


def _ids(job_or_claim) -> tuple[int, int]:
    if isinstance(job_or_claim, tuple):
        return job_or_claim
    return job_or_claim.row_id, job_or_claim.token


__all__ = ["claim", "prepare", "mark_sent", "mark_retry", "mark_failed", "release", "backoff"]
