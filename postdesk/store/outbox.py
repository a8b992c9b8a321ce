"""The notifier's SQL: claim due outbox rows, load them, record what happened.

Only ``postdesk/store`` imports SQLAlchemy, so the worker
(``postdesk.notifier.worker``) calls these functions and gets plain
dataclasses back (``postdesk.notifier.jobs``).  Each function is one short
transaction; no transaction stays open while a mail is on the wire.  Also
here: what a customer update carries (``_prepare_update``: public actions
after the participant's mark, and ones made public later below it; of each,
only its new text, never the whole text with its quoted history, see ``_entry``).

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

Batches.  The worker loads a claimed batch with ``prepare_many`` (a few
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

from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, selectinload

from postdesk.config import Config
from postdesk.notifier.jobs import AttachmentInfo, Done, Entry, Job, Person, Skip
from postdesk.store.errors import unavailable_on_failure
from postdesk.store.models import Action, MessageId, Outbox, Participant, Ticket
from postdesk.store.models import Person as PersonRow
from postdesk.store.text import KEY_MAX

# Flags of actions that must never get an auto-reply (RFC 3834 section 2).
NO_ACK_FLAGS = frozenset({"auto", "list", "bulk", "bounce", "loop"})
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


NO_TEXT = "(no text)"
NO_TEXT_ATTACHED = "(no text; see the attachments)"


def _entry(action: Action, customer: bool = False) -> Entry:
    new_text = action.new_text or ""
    if new_text.strip():
        text = new_text
    elif customer:
        # Never the whole text in customer mail: it holds the quoted history,
        # which may quote a private team alert or another customer's words.
        # An update carries only public actions, so these attachments are
        # public.  A status entry without text is worded by compose.
        text = "" if action.kind == "status" else NO_TEXT_ATTACHED if action.attachments else NO_TEXT
    else:
        # A team alert: staff may see the whole text when the filter found nothing new.
        text = action.text or ""
    return Entry(
        id=action.id,
        kind=action.kind,
        public=bool(action.public),
        author=_person(action.author),
        text=text,
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
    """``prepare_many`` for one claimed row."""
    return prepare_many(store, [(row_id, token)], config, now)[0]


def prepare_many(store, claims, config: Config, now: datetime) -> list[Job | Skip | None]:
    """Load claimed rows as Jobs, in one transaction; rows that must not be
    sent are marked suppressed and come back as Skips.

    None for a row that is no longer ours (our lease ran out and another
    worker claimed it).  Also renews our leases, so a long pass keeps its rows.
    """
    until = now + timedelta(seconds=config.notifier.lease)
    with unavailable_on_failure("outbox"), store.session() as s:
        ours = set(
            s.scalars(
                update(Outbox)
                .where(tuple_(Outbox.id, Outbox.attempts).in_([tuple(c) for c in claims]), Outbox.state == "sending")
                .values(lease_until=until)
                .returning(Outbox.id)
                .execution_options(synchronize_session=False)
            ).all()
        )
        rows = {r.id: r for r in s.scalars(select(Outbox).where(Outbox.id.in_(ours)))} if ours else {}
        pre = _Preload.load(s, list(rows.values()), config, now)
        return [_prepare_row(s, rows[row_id], config, now, pre) if row_id in rows else None for row_id, _token in claims]


class _Preload:
    """What a batch of rows needs, loaded with a few queries instead of a few
    per row (the notifier's throughput is mostly round trips to the database).
    Holding the objects also keeps them in the session's identity map, so
    ``session.get`` and the relationships below issue no SQL."""

    def __init__(self):
        self.keep: list = []
        self.people: dict[str, PersonRow] = {}
        self.first_action: dict[int, int] = {}
        self.acks_sent: dict[str, int] = {}
        self.acks_sending: dict[str, list[int]] = {}

    @classmethod
    def load(cls, s: Session, rows: list[Outbox], config: Config, now: datetime) -> "_Preload":
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
        addresses = {(r.recipient or "").lower() for r in rows}
        pre.people = {p.address: p for p in s.scalars(select(PersonRow).where(PersonRow.address.in_(addresses)))}
        alerts = {r.ticket_id for r in rows if r.kind == "alert"}
        if alerts:
            pre.first_action = dict(
                s.execute(select(Action.ticket_id, func.min(Action.id)).where(Action.ticket_id.in_(alerts)).group_by(Action.ticket_id)).all()
            )
        acks = {r.recipient for r in rows if r.kind == "ack"}
        if acks:
            since = now - timedelta(seconds=config.notifier.ack_window)
            pre.acks_sent = dict(
                s.execute(
                    select(Outbox.recipient, func.count(Outbox.id))
                    .where(Outbox.kind == "ack", Outbox.recipient.in_(acks), Outbox.state == "sent", Outbox.sent_at > since)
                    .group_by(Outbox.recipient)
                ).all()
            )
            for row_id, recipient in s.execute(
                select(Outbox.id, Outbox.recipient).where(Outbox.kind == "ack", Outbox.recipient.in_(acks), Outbox.state == "sending")
            ):
                pre.acks_sending.setdefault(recipient, []).append(row_id)
        return pre

    def person(self, address: str) -> Person:
        return _person(self.people.get(address.lower())) or Person(address=address.lower())

    def acks_before(self, row: Outbox) -> int:
        """Acks to this row's recipient sent within the window, plus older
        claims in flight (the lower row id wins when two workers race)."""
        return self.acks_sent.get(row.recipient, 0) + sum(1 for i in self.acks_sending.get(row.recipient, ()) if i < row.id)


def _prepare_row(s: Session, row: Outbox, config: Config, now: datetime, pre: _Preload) -> Job | Skip:
    ticket = s.get(Ticket, row.ticket_id)
    if row.kind == "ack":
        result = _prepare_ack(s, row, ticket, config, pre)
    elif row.kind == "alert":
        result = _prepare_alert(s, row, ticket, config, pre)
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


def _prepare_ack(s: Session, row: Outbox, ticket: Ticket, config: Config, pre: _Preload) -> Job | str:
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
    count = pre.acks_before(row)
    if count >= limit:
        return f"rate limit ({count} acknowledgements to this sender in {int(config.notifier.ack_window)} s)"
    return _job(row, ticket, pre.person(to), [_entry(action, customer=True)], in_reply_to=action.message_id or "", up_to_action_id=action.id)


def _prepare_alert(s: Session, row: Outbox, ticket: Ticket, config: Config, pre: _Preload) -> Job | str:
    to = (row.recipient or "").strip().lower()
    if not to or config.is_system_address(to):
        return "own address"  # a system address would turn the alert into a ticket
    action = s.get(Action, row.action_id) if row.action_id else None
    if action is None:
        return "action missing"
    first = pre.first_action.get(ticket.id)
    return _job(
        row,
        ticket,
        pre.person(to),
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
    fresh = Action.id > since
    late = _late(s, row, ticket, since)
    if late is not None:
        fresh = or_(fresh, late)
    actions = s.scalars(
        select(Action)
        .where(
            Action.ticket_id == ticket.id,
            fresh,
            Action.public.is_(True),
            Action.kind.in_(("message", "status")),
        )
        .order_by(Action.id)
        .options(selectinload(Action.author), selectinload(Action.attachments))
    ).all()
    entries = []
    for a in actions:
        if a.author is not None and a.author.address == to:
            continue  # never their own words back to them
        if to in (a.delivered_to or "").lower().replace(",", " ").split():
            continue  # they got this message directly (To/Cc)
        if a.kind == "status" and not config.organization.status_change_emails:
            continue
        entries.append(_entry(a, customer=True))
    up_to = max([since] + [a.id for a in actions])
    if not entries:
        # What is new is theirs or already theirs: mark it told.
        participant.last_update_action_id = up_to
        row.up_to_action_id = up_to
        row.since_action_id = since
        return "nothing new for this recipient"
    return _job(
        row,
        ticket,
        _person(person),
        entries,
        in_reply_to=participant.last_message_id or "",
        up_to_action_id=up_to,
        since_action_id=since,
    )


def _late(s: Session, row: Outbox, ticket: Ticket, since: int):
    """Messages below the participant's mark that were never carried to them:
    made public (``action toggle``) after the mark passed them while private.

    The mark's first value (when they joined, or their first update) bounds
    the search, so a participant who joined later does not get the history;
    the ``action_ids`` of their sent updates say what they already have.
    """
    past = s.execute(
        select(Outbox.action_ids, Outbox.since_action_id).where(
            Outbox.ticket_id == ticket.id,
            Outbox.recipient == row.recipient,
            Outbox.kind == "update",
            Outbox.state.in_(("sent", "suppressed")),
            Outbox.up_to_action_id > 0,
        )
    ).all()
    if not past:
        return None
    floor = min(p.since_action_id for p in past)
    told = {int(i) for p in past for i in (p.action_ids or "").split() if i.isdigit()}
    if floor >= since:
        return None
    cond = and_(Action.id > floor, Action.id <= since, Action.kind == "message")
    if told:
        cond = and_(cond, Action.id.not_in(told))
    return cond


# --- results -------------------------------------------------------------------


def record(store, done: list[Done], config: Config) -> list[tuple[str, float]]:
    """Record the results of a batch in one transaction (one commit, not one per mail).

    Returns, per item, (state, seconds): ("sent", 0), ("deferred", delay),
    ("failed", 0), or ("lost", 0) when the row was no longer ours.  Grouping
    the commits widens the store-side duplicate window described above from
    one mail to one batch; the worker records each batch as soon as it is sent.
    """
    out: list[tuple[str, float]] = []
    t = Outbox.__table__
    with unavailable_on_failure("outbox"), store.session() as s:
        # Lock our rows (PostgreSQL) so no claim slips in between check and write.
        rows = {
            r.id: r
            for r in s.execute(
                select(t.c.id, t.c.state, t.c.attempts, t.c.ticket_id, t.c.action_id)
                .where(t.c.id.in_({d.job.row_id for d in done}))
                .with_for_update()
            )
        }
        others = [d.job.row_id for d in done if d.status != "sent"]
        keep = s.scalars(select(Outbox).where(Outbox.id.in_(others))).all() if others else []  # noqa: F841 (identity map)
        keys = {d.message_id.strip("<>")[:KEY_MAX] for d in done if d.status == "sent"}
        seen = set(s.scalars(select(MessageId.key).where(MessageId.key.in_(keys)))) if keys else set()
        sent, ids = [], []
        for d in done:
            if d.status == "sent":
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
            s.execute(MessageId.__table__.insert(), ids)
    return out


def mark_sent(store, job: Job, message_id: str, queue_id: str, now: datetime) -> bool:
    return record(store, [Done(job, "sent", now, message_id=message_id, queue_id=queue_id)], None)[0][0] == "sent"


def mark_retry(store, job: Job, error: str, now: datetime, config: Config) -> tuple[str, float]:
    return record(store, [Done(job, "retry", now, error=error)], config)[0]


def mark_failed(store, job: Job, error: str, now: datetime) -> bool:
    return record(store, [Done(job, "failed", now, error=error)], None)[0][0] == "failed"


def _row(s: Session, job: Job) -> Outbox | None:
    row = s.get(Outbox, job.row_id)
    if row is None or row.state != "sending" or row.attempts != job.token:
        return None
    return row


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
        s.execute(
            update(Participant)
            .where(
                Participant.ticket_id == row.ticket_id,
                Participant.person_id == select(PersonRow.id).where(PersonRow.address == job.recipient.address).scalar_subquery(),
                Participant.last_update_action_id < job.up_to_action_id,
            )
            .values(last_update_action_id=job.up_to_action_id)
            .execution_options(synchronize_session=False)
        )
    return ("sent", 0.0) if ours else ("lost", 0.0)


def _retry(s: Session, d: Done, config: Config) -> tuple[str, float]:
    """A temporary failure: queued again after a backoff, failed when too old."""
    row = _row(s, d.job)
    if row is None:
        return ("lost", 0.0)
    if (d.at - row.created_at).total_seconds() >= config.notifier.retry_max_age:
        _fail(s, row, f"gave up after {row.attempts} attempts: {d.error}", d.at)
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
    _fail(s, row, d.error, d.at)
    return ("failed", 0.0)


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


__all__ = ["claim", "prepare", "prepare_many", "record", "mark_sent", "mark_retry", "mark_failed", "release", "backoff"]
