"""Plain values passed from the outbox (``postdesk.store.outbox``) to composition.

The store loads everything one mail needs into these frozen dataclasses inside
a short transaction; composing and sending then run with no database session
open, so a slow SMTP server never holds a lock.  No SQLAlchemy here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Person:
    address: str  # lower-cased
    name: str = ""
    staff: bool = False

    def label(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class AttachmentInfo:
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str = ""


@dataclass(frozen=True)
class Entry:
    """One action as a notification shows it."""

    id: int
    kind: str  # message | status | system
    public: bool
    author: Person | None
    text: str  # the new text (quotes stripped); when empty: customer mail a placeholder, a team alert the whole text
    created_at: datetime
    flags: frozenset[str] = frozenset()
    attachments: tuple[AttachmentInfo, ...] = ()


@dataclass(frozen=True)
class Job:
    """One claimed outbox row, ready to compose.

    ``token`` is the row's ``attempts`` after our claim: every claim bumps it,
    so a worker whose lease ran out (and whose row another worker claimed)
    cannot record a result for it any more.
    """

    row_id: int
    token: int
    kind: str  # ack | alert | update
    ticket: int  # the ticket number
    subject: str
    status: str
    recipient: Person
    entries: tuple[Entry, ...]
    in_reply_to: str = ""  # Message-ID without <>, "" for none
    up_to_action_id: int = 0  # update: the newest action it accounts for
    since_action_id: int = 0  # update: the participant's mark it started from
    created_at: datetime | None = None  # when the row was queued (gives up after retry_max_age)
    new_ticket: bool = True  # alert: a new ticket, or a reply on one


@dataclass(frozen=True)
class Skip:
    """A claimed row that must not be sent; the outbox marks it suppressed."""

    row_id: int
    kind: str
    ticket: int
    recipient: str
    reason: str


@dataclass(frozen=True)
class Done:
    """What happened to one Job, for ``postdesk.store.outbox.record``.

    status: "sent" (with message_id and queue_id), "retry" (temporary
    failure) or "failed" (permanent), with the SMTP error text.
    """

    job: Job
    status: str
    at: datetime
    message_id: str = ""
    queue_id: str = ""
    error: str = ""
