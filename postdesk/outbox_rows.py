"""Plain values between the store's outbox and the notifier.

The store (``postdesk.store.outbox``) loads what a claimed row needs into
these frozen dataclasses inside a short transaction (``Claimed`` with its
``ActionRow``s and history); the notifier's policy
(``postdesk.notifier.policy``) turns each into a ``Job`` to send, a ``Skip``
(suppressed) or a ``Defer`` (rate-limited); composing and sending then run
with no database session open, so a slow SMTP server never holds a lock.
The results go back to the store as ``Done`` / ``Skip`` / ``Defer``.

This module sits outside both packages so that the store never imports the
notifier, and the notifier never imports SQLAlchemy.  One rule lives here
because both sides apply it: who is a customer (the store queues updates for
them, the policy sends them only to them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postdesk.config import Config


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
    inline: bool = False  # shown in the HTML by its Content-ID


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
    html: str = ""  # the sanitised HTML of the new text, "" for none


@dataclass(frozen=True)
class Job:
    """One claimed outbox row, ready to compose.

    ``token`` is the row's ``attempts`` after our claim: every claim bumps it,
    so a worker whose lease ran out (and whose row another worker claimed)
    cannot record a result for it any more.
    """

    row_id: int
    token: int
    kind: str  # ack | alert | update | reminder | bounce-alert
    ticket: int  # the ticket number
    subject: str
    status: str
    recipient: Person
    entries: tuple[Entry, ...]
    department: str = ""  # the ticket's [[departments]] name: its From/Reply-To ("" = [organization])
    in_reply_to: str = ""  # Message-ID without <>, "" for none
    up_to_action_id: int = 0  # update: the newest action it accounts for
    since_action_id: int = 0  # update: the participant's mark it started from
    created_at: datetime | None = None  # when the row was queued (gives up after retry_max_age)
    new_ticket: bool = True  # alert: a new ticket, or a reply on one
    language: str = ""  # the ticket's language ("" unknown)


@dataclass(frozen=True)
class Skip:
    """A claimed row that must not be sent; the store marks it suppressed.

    ``advance``: an update whose news the recipient has already (their own
    words, or mail they got directly): the store moves their
    ``last_update_action_id`` to ``up_to_action_id`` and records what the
    row accounted for, as if it had been sent.
    """

    row_id: int
    token: int
    kind: str
    ticket: int
    recipient: str
    reason: str
    advance: bool = False
    up_to_action_id: int = 0
    since_action_id: int = 0
    action_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Defer:
    """A claimed row held back by a rate limit: queued again, due at ``until``."""

    row_id: int
    token: int
    kind: str
    ticket: int
    recipient: str
    reason: str
    until: datetime


# --- what the store loads for the policy -------------------------------------


@dataclass(frozen=True)
class ActionRow:
    """One action as stored (both texts: the policy picks what a mail shows)."""

    id: int
    kind: str  # message | status | system
    public: bool
    author: Person | None
    text: str
    new_text: str
    created_at: datetime
    flags: frozenset[str] = frozenset()
    message_id: str = ""
    delivered_to: frozenset[str] = frozenset()  # got it directly (To/Cc)
    attachments: tuple[AttachmentInfo, ...] = ()
    html: str = ""  # the message's sanitised HTML as stored, "" for none


@dataclass(frozen=True)
class ParticipantRow:
    role: str  # requester | cc | staff
    staff: bool  # the person's flag
    last_update_action_id: int
    last_message_id: str


@dataclass(frozen=True)
class PastUpdate:
    """An update row to this recipient on this ticket that was settled
    (sent, suppressed or failed): what it accounted for."""

    since_action_id: int
    action_ids: frozenset[int]


@dataclass(frozen=True)
class Claimed:
    """A claimed outbox row with what the policy needs to decide about it.

    ack/alert/bounce-alert: ``action`` is the action it is about.  update: ``participant``
    (None: not on the ticket), ``candidates`` (public message/status actions
    after the lowest mark this recipient ever had, oldest first), ``past``
    (settled updates), ``sent_in_window`` (send times of updates to this
    recipient on this ticket within ``update_window``).
    """

    row_id: int
    token: int
    kind: str
    ticket_id: int
    ticket: int  # number
    subject: str
    status: str
    visible: bool
    recipient: Person
    created_at: datetime
    department: str = ""  # the ticket's [[departments]] name ("" = the default)
    action: ActionRow | None = None
    first_action_id: int = 0
    participant: ParticipantRow | None = None
    candidates: tuple[ActionRow, ...] = ()
    past: tuple[PastUpdate, ...] = ()
    sent_in_window: tuple[datetime, ...] = ()
    language: str = ""  # the ticket's language ("" unknown)


@dataclass(frozen=True)
class AckHistory:
    """Acknowledgements that count against the limits: sent within
    ``ack_window`` (recipient -> count) and claimed by other workers now
    (row id, recipient), outside the batch being decided."""

    sent: dict[str, int]
    in_flight: tuple[tuple[int, str], ...] = ()


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


def is_customer(address: str, role: str, staff: bool, config: Config) -> bool:
    """A participant who gets customer updates: not staff (by role, by the
    person's flag or by the configuration), never one of our own addresses."""
    return not (role == "staff" or staff or config.matches_staff(address) or config.is_own_address(address))


def customers(participants: Iterable[tuple[str, str, bool]], config: Config) -> list[str]:
    """Sorted customer addresses among (address, role, staff) participants."""
    return sorted({a for a, role, staff in participants if is_customer(a, role, staff, config)})
