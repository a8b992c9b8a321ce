"""Apply one filter Decision inside the message's transaction.

NEW opens a ticket (number from the ``counters`` row), FOLLOWUP adds an
action to an existing one; both store the attachments, the message's key
(the duplicate guard), the participants, and the outbox rows (ack, team
alert, customer update).  The caller (``Store.record``) owns the
transaction and turns an IntegrityError on ``message_ids.key`` into a
DUPLICATE.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.config import Config
from postdesk.filter.decision import Decision, Envelope, Kind
from postdesk.outcomes import Outcome, Result
from postdesk.store.blobs import write_blob
from postdesk.store.errors import INIT_HINT, StoreNotInitialised
from postdesk.store.models import Action, Attachment, Counter, MessageId, Outbox, Participant, Person, Ticket
from postdesk.store.text import KEY_MAX, clean, message_key
from postdesk.store.updates import schedule_update


TICKET_COUNTER = "ticket_number"
# A message with one of these flags adds nobody to its ticket.
NO_JOIN_FLAGS = frozenset({"stranger", "bounce", "auto", "list", "loop", "untrusted"})


def next_ticket_number(session: Session, config: Config) -> int:
    """UPDATE ... RETURNING on the counter row: concurrent writers serialise
    on its row lock (PostgreSQL) or on the write lock (SQLite), so numbers
    never collide; a rolled-back message gives its number back."""
    table = Counter.__table__
    value = session.execute(
        table.update().where(table.c.name == TICKET_COUNTER).values(value=table.c.value + 1).returning(table.c.value)
    ).scalar_one_or_none()
    if value is None:
        raise StoreNotInitialised(f"the ticket counter is missing; {INIT_HINT}")
    first = int(config.organization.first_ticket_number)
    if value < first:
        # first_ticket_number was raised after init: jump forward once.
        session.execute(table.update().where(table.c.name == TICKET_COUNTER).values(value=first))
        value = first
    return value


def person_for(session: Session, address: str, name: str = "", staff: bool = False) -> Person:
    address = clean(address, 320).lower()
    name = clean(name, 200)
    p = session.scalar(select(Person).where(Person.address == address))
    if p is None:
        p = Person(address=address, name=name, staff=bool(staff))
        session.add(p)
        session.flush()
        return p
    if name and p.name != name:
        p.name = name
    if staff and not p.staff:
        # Only trusted mail sets it; an untrusted message never clears it.
        p.staff = True
    return p


def participant(ticket: Ticket, person: Person, role: str, last_update_action_id: int = 0) -> Participant:
    for p in ticket.participants:
        if p.person_id == person.id:
            if role == "staff" and p.role == "cc":
                p.role = "staff"
            return p
    p = Participant(person=person, role=role, last_update_action_id=last_update_action_id, last_message_id="")
    ticket.participants.append(p)
    return p


def status_action(session: Session, ticket: Ticket, status: str, author: Person | None, now: datetime, flags: str = "") -> Action:
    """Record a status change as a public "status" action and apply it."""
    old = ticket.status
    action = Action(
        ticket=ticket,
        author=author,
        kind="status",
        public=True,
        text=f"Status changed from {old} to {status}",
        new_text=f"Status changed from {old} to {status}",
        flags=flags,
        message_id="",
        queue_id="",
        delivered_to="",
        created_at=now,
    )
    session.add(action)
    ticket.status = status
    ticket.updated_at = now
    session.flush()
    return action


def _outbox(kind: str, ticket: Ticket, action: Action, recipient: str, now: datetime) -> Outbox:
    return Outbox(kind=kind, ticket_id=ticket.id, action_id=action.id, recipient=recipient, due_at=now, created_at=now, up_to_action_id=action.id)


def existing_ticket_number(session: Session, key: str) -> int | None:
    row = session.execute(
        select(Ticket.number).join(MessageId, MessageId.ticket_id == Ticket.id).where(MessageId.key == message_key(key))
    ).first()
    return row[0] if row else None


def apply(
    session: Session,
    d: Decision,
    envelope: Envelope,
    config: Config,
    now: datetime,
    attachments_root: Path,
) -> Result:
    if d.kind is Kind.IGNORE:
        return Result(Outcome.IGNORED, ticket=d.ticket, decision=d, reason=d.reason)
    if d.kind is Kind.REJECT:
        return Result(Outcome.REJECTED, decision=d, reason=d.reason)
    if d.kind is Kind.DUPLICATE:
        number = existing_ticket_number(session, d.message_key) if d.message_key else None
        return Result(Outcome.DUPLICATE, ticket=number if number is not None else d.ticket, decision=d)

    # Claim the message key first: a racing delivery of the same message
    # blocks on the unique index (PostgreSQL) and fails here, before it has
    # taken a ticket number or written anything else.
    # (The filter always gives a key; an empty one would make every keyless
    # message a duplicate of the first, so it is not stored.)
    key_row = None
    if message_key(d.message_key):
        key_row = MessageId(key=message_key(d.message_key), ours=False, created_at=now)
        session.add(key_row)
        session.flush()

    stored = [(a, write_blob(attachments_root, a.data)) for a in d.attachments]

    ticket = None
    if d.kind is Kind.FOLLOWUP and d.ticket is not None:
        # Lock the ticket row (PostgreSQL; SQLite holds the database write
        # lock already): concurrent changes to one ticket serialise, so
        # participants and the queued update row stay single.
        ticket = session.scalar(select(Ticket).where(Ticket.number == d.ticket).with_for_update())
    created = ticket is None  # a FOLLOWUP whose ticket vanished opens a new one
    # The number before any person row: every new ticket takes the counter
    # lock first, so two new tickets naming each other's new addresses
    # cannot deadlock on PostgreSQL.
    number = next_ticket_number(session, config) if created else None

    author_address = (d.author or envelope.sender or "").lower()
    author = person_for(session, author_address, d.author_name, d.staff) if author_address else None
    cc = [clean(a, 320).lower() for a in d.cc if a and not config.is_own_address(a) and a.lower() != author_address]
    cc = list(dict.fromkeys(cc))

    if created:
        requester = author or person_for(session, "", "")
        ticket = Ticket(
            number=number,
            subject=clean(d.subject or d.original_subject),
            status="open",
            visible_to_customers=True,
            requester=requester,
            created_at=now,
            updated_at=now,
        )
        session.add(ticket)
        session.flush()
    else:
        ticket.updated_at = now

    flags = set(d.flags)
    if created and d.kind is Kind.FOLLOWUP:
        flags.add("unknown-ticket")
    action = Action(
        ticket=ticket,
        author=author,
        kind="message",
        public=bool(d.public),
        text=clean(d.text),
        new_text=clean(d.new_text),
        flags=clean(" ".join(sorted(flags)), 200),
        message_id=clean(d.message_id, KEY_MAX),
        queue_id=clean(envelope.queue_id, 64),
        # Space-separated: they got this message directly (its To/Cc).
        delivered_to=" ".join(cc),
        created_at=now,
    )
    session.add(action)
    session.flush()
    for a, (sha, rel) in stored:
        session.add(
            Attachment(
                action_id=action.id,
                sha256=sha,
                size=len(a.data),
                content_type=clean(a.content_type, 255) or "application/octet-stream",
                filename=clean(a.filename, 255),
                content_id=clean(a.content_id, 255),
                path=rel,
            )
        )
    if key_row is not None:
        key_row.ticket_id = ticket.id
        key_row.action_id = action.id

    # Participants.  The requester wrote the first action: they get the
    # acknowledgement, not an update about it.  People in To/Cc received the
    # message directly.  Nobody starts receiving customer mail through a
    # stranger's message, a bounce or an auto-reply (RFC 3834), or a private
    # one: then only someone already on the ticket is updated.
    may_join = (d.public or d.staff) and not (flags & NO_JOIN_FLAGS)
    me = None
    if author is not None:
        if created:
            me = participant(ticket, author, "requester", last_update_action_id=action.id)
        elif may_join:
            # Someone joining later (say, a colleague the customer forwarded
            # our update to) is told what happens from now on, not the
            # ticket's earlier history.
            me = participant(ticket, author, "staff" if d.staff else "cc", last_update_action_id=action.id)
        else:
            me = next((p for p in ticket.participants if p.person_id == author.id), None)
        if me is not None and d.message_id:
            me.last_message_id = clean(d.message_id, KEY_MAX)
    if (created and not (flags & NO_JOIN_FLAGS)) or (d.public and may_join):
        for address in cc:
            participant(ticket, person_for(session, address), "cc", last_update_action_id=action.id)
    session.flush()

    # Outbox: acknowledgement and team alert go on the next tick.
    if created and d.send_ack and author is not None and "@" in author.address and not config.is_own_address(author.address):
        session.add(_outbox("ack", ticket, action, author.address, now))
    if d.notify_team:
        for address in config.organization.team:
            if address != author_address:
                session.add(_outbox("alert", ticket, action, address, now))

    if action.public:
        schedule_update(session, ticket, now, config, exclude={author_address, *cc})
    if d.close and ticket.status != "closed":
        status_action(session, ticket, "closed", author, now, flags="closed")
        if config.organization.status_change_emails:
            schedule_update(session, ticket, now, config, exclude=author_address)
    session.flush()
    return Result(Outcome.CREATED if created else Outcome.UPDATED, ticket=ticket.number, action_id=action.id, decision=d)
