"""SQLAlchemy models: tickets, people, actions, attachments, message-ids, outbox.

The schema is created and upgraded only by Alembic (``store/migrations``);
these classes must stay in step with the newest revision, which a test checks.
Addresses are stored lower-cased.  Times are naive UTC datetimes: SQLite has
no time zones, and mixing aware and naive values is a classic source of bugs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Small key/value facts of the installation (the Message-ID HMAC secret)."""

    __tablename__ = "settings"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class Counter(Base):
    """Named counters; ``ticket_number`` hands out ticket numbers.

    Incremented with UPDATE ... so two writers serialise on the row lock
    (PostgreSQL) or the database write lock (SQLite) and never collide.
    """

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class Person(Base):
    __tablename__ = "people"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    staff: Mapped[bool] = mapped_column(Boolean, default=False)  # as last seen trusted


class Ticket(Base):
    """A ticket.  status: open | pending (waiting for the customer) | closed.

    Revision 0004 (departments and the lifecycle): ``department`` is the
    name of its ``[[departments]]`` table ("" for the default), ``owner_id``
    the staff member who owns it, ``merged_into`` the number of the ticket
    it was merged into, ``closed_at`` when it was last closed (the reopen
    window runs from it), ``last_public_staff_at`` when staff last acted
    publicly on it (the pending reminder and auto-close run from it), and
    ``reminded_at`` when the one pending reminder was queued.
    """

    __tablename__ = "tickets"
    # ix_tickets_pending: the notifier's due query (pending tickets by the
    # time of their last public staff action) reads only the due rows.
    # Revision 0006 (large stores): ix_tickets_requester_created serves the
    # new-ticket rate limit (tickets a sender opened since ...), which
    # scanned every ticket; ix_tickets_status_updated the purge's batches
    # (closed, oldest first); ix_tickets_owner_id the foreign key check when
    # a person is deleted.
    __table_args__ = (
        Index("ix_tickets_pending", "status", "last_public_staff_at"),
        Index("ix_tickets_requester_created", "requester_id", "created_at"),
        Index("ix_tickets_status_updated", "status", "updated_at"),
        Index("ix_tickets_status_number", "status", "number"),
        Index("ix_tickets_owner_id", "owner_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | pending | closed
    visible_to_customers: Mapped[bool] = mapped_column(Boolean, default=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    department: Mapped[str] = mapped_column(String(64), default="", server_default="")
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", name="fk_tickets_owner_id_people"), nullable=True)
    merged_into: Mapped[int | None] = mapped_column(Integer, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_public_staff_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    requester: Mapped[Person] = relationship(foreign_keys=[requester_id])
    owner: Mapped[Person | None] = relationship(foreign_keys=[owner_id])
    actions: Mapped[list[Action]] = relationship(back_populates="ticket", order_by="Action.id")
    participants: Mapped[list[Participant]] = relationship(back_populates="ticket")


class Participant(Base):
    """A person on a ticket.  role: requester | cc | staff.

    ``last_update_action_id`` is the newest action this person has been told
    about; a customer update carries the public actions after it.
    ``last_message_id`` is their newest message, for In-Reply-To.
    """

    __tablename__ = "participants"
    # ix_participants_person_id (revision 0006): who still references a
    # person (purge, forget) without a scan.
    __table_args__ = (UniqueConstraint("ticket_id", "person_id"), Index("ix_participants_person_id", "person_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    role: Mapped[str] = mapped_column(String(16), default="cc")
    last_update_action_id: Mapped[int] = mapped_column(Integer, default=0)
    last_message_id: Mapped[str] = mapped_column(String(998), default="")

    ticket: Mapped[Ticket] = relationship(back_populates="participants")
    person: Mapped[Person] = relationship()


class Action(Base):
    """One entry on a ticket.  kind: message | status | system.

    ``flags`` is a space-separated set (pvt closed untrusted stranger auto ...).
    """

    __tablename__ = "actions"
    # ix_actions_author_ticket (revision 0006): a person's actions (purge,
    # forget), and a sender's actions on one ticket (the auto-responder
    # rule): with the ticket in it, the planner never walks all of a staff
    # member's actions on every ticket.
    __table_args__ = (Index("ix_actions_author_ticket", "author_id", "ticket_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="message")
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    text: Mapped[str] = mapped_column(Text, default="")
    new_text: Mapped[str] = mapped_column(Text, default="")
    flags: Mapped[str] = mapped_column(String(200), default="")
    message_id: Mapped[str] = mapped_column(String(998), default="")
    queue_id: Mapped[str] = mapped_column(String(64), default="")
    # Addresses that received this message directly (its To/Cc): a customer
    # update never mails an action again to someone who already has it.
    delivered_to: Mapped[str] = mapped_column(Text, default="")
    # Revision 0003: the authentication verdict of the message, as JSON
    # ({"spf", "dkim", "dmarc", "verified"}, RFC 8601 words); "" when none.
    auth: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Revision 0004: the message's HTML, sanitised ("" when it had none).
    html: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)

    ticket: Mapped[Ticket] = relationship(back_populates="actions")
    author: Mapped[Person | None] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(back_populates="action", order_by="Attachment.id")


class Attachment(Base):
    """Metadata of a stored attachment.  The bytes are a blob named by
    ``sha256`` (``postdesk.store.blobs``: rows of ``blob_chunks``, or a
    file); ``path`` is where the directory backend put the file, relative to
    ``[store] attachments`` ("" when the database holds it); readers go by
    ``sha256``."""

    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("actions.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_id: Mapped[str] = mapped_column(String(255), default="")
    # Revision 0004: an inline part (an image the HTML shows by its cid:).
    inline: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    path: Mapped[str] = mapped_column(String(255))

    action: Mapped[Action] = relationship(back_populates="attachments")


class MessageId(Base):
    """Every Message-ID we received or sent, mapped to its ticket.

    ``key`` is the Message-ID without <> (or "sha256:..." for a message that
    had none); ``digest`` (revision 0003) is the filter's digest of who sent
    what (``postdesk.filter.draft.content_digest``), "" for our own.  The
    pair is unique: that is what makes a redelivered message a duplicate,
    even when two deliveries race, while a forged mail reusing a genuine
    Message-ID (another author or content) is recorded beside it instead of
    swallowing it.
    """

    __tablename__ = "message_ids"
    __table_args__ = (UniqueConstraint("key", "digest", name="uq_message_ids_key_digest"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(998))
    digest: Mapped[str] = mapped_column(String(64), default="", server_default="")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True, index=True)
    # Indexed (revision 0006): deleting an action checks this foreign key.
    action_id: Mapped[int | None] = mapped_column(ForeignKey("actions.id"), nullable=True, index=True)
    ours: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Outbox(Base):
    """A mail the notifier will send.

    kind: ack | alert | update.  ``ack`` and ``alert`` point at the action
    they are about; an ``update`` is composed when due from the ticket's
    public actions after the participant's ``last_update_action_id``.
    state: queued | sending | sent | failed | suppressed.
    A queued update's ``due_at`` moves to (last change + quiet_period) on
    every change to its ticket.  ``lease_until`` marks a row claimed by a
    worker; a row whose lease ran out is claimed again.
    """

    __tablename__ = "outbox"
    # ix_outbox_message_state (revision 0006, ix_outbox_message_id of 0003
    # before): the filter asks whom one of our Message-IDs was sent to
    # (docs/filter.md, rule "stranger"); with state in the index SQLite
    # takes it rather than reading every sent row through ix_outbox_due.
    # ix_outbox_sent (revision 0006): the notifier counts the acks sent in
    # its window on every pass with an ack; it read every sent row.
    __table_args__ = (
        Index("ix_outbox_due", "state", "due_at"),
        Index("ix_outbox_message_state", "message_id", "state"),
        Index("ix_outbox_sent", "kind", "state", "sent_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    # Indexed (revision 0006): deleting an action checks this foreign key.
    action_id: Mapped[int | None] = mapped_column(ForeignKey("actions.id"), nullable=True, index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    due_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(998), default="")  # ours, when sent
    queue_id: Mapped[str] = mapped_column(String(64), default="")  # Postfix's, from the 250 reply
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    up_to_action_id: Mapped[int] = mapped_column(Integer, default=0)  # update: newest action included
    # update, when sent (revision 0002): the actions it carried ("12 15 17")
    # and the participant's last_update_action_id it started from; together
    # they let an action toggled public below that mark still go, once.
    action_ids: Mapped[str] = mapped_column(Text, default="", server_default="")
    since_action_id: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class BlobRow(Base):
    """A blob kept in the database (revision 0005, ``[store] blobs =
    "database"``): its SHA-256 (hex) names it, its bytes are the rows of
    ``blob_chunks`` in ``seq`` order."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class BlobChunk(Base):
    """One piece of a blob (``postdesk.store.blobs.common.CHUNK`` bytes, the
    last one shorter): a 25 MB attachment is read and written a chunk at a
    time, never whole."""

    __tablename__ = "blob_chunks"
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256", name="fk_blob_chunks_sha256_blobs"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
