"""The values that flow through the filter: envelope in, Decision out.

These are plain frozen dataclasses so the milter, the pipe filter, the store
and the tests can all build and compare them without importing each other.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from postdesk.auth.result import UNCHECKED, AuthResult


@dataclass(frozen=True)
class Envelope:
    """What the MTA told us about the message, outside its headers."""

    sender: str  # MAIL FROM, "" for the null sender (bounces)
    recipients: tuple[str, ...]  # RCPT TO, as given
    queue_id: str = ""  # Postfix queue id (milter macro i, pipe ${queue_id})
    client_address: str = ""  # {client_addr} / ${client_address}
    sasl_username: str = ""  # {auth_authen} / ${sasl_username}
    client_name: str = ""
    helo: str = ""  # HELO/EHLO name ({client_helo} / ${client_helo}): SPF's identity for the null sender


class Kind(enum.Enum):
    """What the filter decided to do with a message."""

    NEW = "new"  # open a ticket
    FOLLOWUP = "followup"  # add an action to Decision.ticket
    DUPLICATE = "duplicate"  # seen before (same Message-ID or raw hash, same sender and content): record nothing
    DEFER = "defer"  # not now (the sender's new-ticket rate): record nothing, answer 4xx
    IGNORE = "ignore"  # deliberately not recorded (loop, our own mail, bounce without ticket)


@dataclass(frozen=True)
class Attachment:
    """One attachment as found in the message; bytes already decoded."""

    filename: str  # sender's name, cleaned (no path, no controls); metadata only
    content_type: str
    data: bytes
    content_id: str = ""  # inline images: the Content-ID without <>
    inline: bool = False


@dataclass(frozen=True)
class Decision:
    """The outcome of the filter for one message.

    ``flags`` is a set of short words used in logs and stored on the action:
    pvt, closed, untrusted, stranger, auto, list, bulk, bounce, loop, staff,
    truncated, direct, unknown-tag, forged, unverified, noreply, spam.
    """

    kind: Kind
    message_key: str  # Message-ID without <> or "sha256:<hex>" of the raw message
    ticket: int | None = None  # for FOLLOWUP (and DUPLICATE when known)
    message_id: str = ""  # Message-ID without <>, "" when the message had none
    digest: str = ""  # sha256 over author, subject, body (and "refuted"): with message_key, the duplicate identity
    references: tuple[str, ...] = ()  # In-Reply-To, then References newest first (order of preference), without <>
    author: str = ""  # From: address, lower-cased
    author_name: str = ""  # From: display name, decoded and cleaned
    subject: str = ""  # decoded, cleaned, Re:/Fwd: prefixes and our tag removed
    original_subject: str = ""  # decoded and cleaned, as the sender wrote it
    text: str = ""  # the whole body as text
    new_text: str = ""  # text with quoted history and signature removed
    html: str = ""  # the body's HTML, sanitised (postdesk.sanitise); "" when the mail had no HTML part
    attachments: tuple[Attachment, ...] = ()
    public: bool = True  # False: private action, no customer mail
    close: bool = False  # [closed] from a trusted staff member
    staff: bool = False  # the author is trusted staff
    send_ack: bool = True  # False for auto/list/bounce mail: never auto-reply (RFC 3834)
    ack_to: str = ""  # where the acknowledgement goes (the envelope sender, RFC 3834 section 4); "" = the author
    notify_team: bool = True  # team alert for this action
    cc: tuple[str, ...] = ()  # other To/Cc addresses (not ours), lower-cased
    flags: frozenset[str] = field(default_factory=frozenset)
    reason: str = ""  # for IGNORE and DEFER: why, for the log and the SMTP reply
    auth: AuthResult = UNCHECKED  # who really wrote it (SPF/DKIM/DMARC), see postdesk.auth
    department: str = ""  # NEW: the department the message was sent to (config.department_for); "" = the default
    # The lifecycle (docs/commands.md): set by the staff commands and by the
    # reopen rules; the store applies them in the message's transaction.
    status: str = ""  # the ticket's new status: "open" | "pending" | "closed"; "" = unchanged
    owner: str | None = None  # the new owner's address ([take], [assign ADDRESS]); "" = none; None = unchanged
    merge_into: int | None = None  # [merge #N]: merge this message's ticket into N
    follow_up_of: int | None = None  # NEW: a reply to a ticket closed longer than the reopen window
    requester: str = ""  # NEW by [fwd]: the customer the forwarded mail came from ("" = the author)
    requester_name: str = ""
    note: str = ""  # [fwd]: the staff member's own text, a private action beside the customer's
    refused: tuple[str, ...] = ()  # commands not honoured, each "COMMAND: why", for the private reply to staff
    # A permanent delivery failure of our mail (rule "bounce", RFC 3464): per
    # failed recipient (Final-Recipient, Status, Diagnostic-Code); the owner
    # or the team get one alert about it.
    bounce: tuple[tuple[str, str, str], ...] = ()
    language: str = ""  # a new ticket's language (rule "language"), "" unknown


@dataclass(frozen=True)
class TicketInfo:
    """What the filter may know of an existing ticket."""

    number: int
    status: str  # "open" | "pending" | "closed"
    requester: str
    participants: frozenset[str]  # lower-cased addresses, requester included
    department: str = ""  # its [[departments]] name, "" for the default
    owner: str = ""  # the owner's address, "" when unowned
    merged_into: int | None = None  # the ticket it was merged into
    closed_at: datetime | None = None  # when it was last closed


class Known(Protocol):
    """A read-only view of the store, given to the filter.

    The store implements it inside the transaction that will apply the
    Decision, so what the filter sees is what gets written against.
    """

    def ticket(self, number: int) -> TicketInfo | None: ...

    def ticket_for_message_ids(self, message_ids: Sequence[str]) -> int | None:
        """The ticket that any of these Message-IDs (ours or theirs) belongs to."""
        ...

    def message_seen(self, message_key: str, digest: str = "") -> bool:
        """A message with this key and this content digest was recorded (``digest`` "": any)."""
        ...

    def new_tickets_since(self, address: str, since: datetime, include_forged: bool = False, verified_only: bool = False) -> int:
        """How many tickets ``address`` opened at or after ``since``; tickets
        opened by mail that failed authentication count only with
        ``include_forged``; with ``verified_only``, only tickets opened by
        authenticated mail count."""
        ...

    def sent_mail(self, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Of these Message-IDs, the ones we sent: id (without <>) -> (recipient, ticket number)."""
        ...

    def sent_times(self, address: str, ticket: int, limit: int = 2) -> tuple[datetime, ...]:
        """When we last sent mail about ``ticket`` to ``address``, newest first."""
        ...

    def authored_times(self, address: str, ticket: int, limit: int = 1) -> tuple[datetime, ...]:
        """When ``address``'s last messages on ``ticket`` were recorded, newest first."""
        ...

    def secret(self) -> bytes:
        """Key of the HMAC token in our own Message-IDs (see postdesk.msgid)."""
        ...


__all__ = ["Envelope", "Kind", "Attachment", "Decision", "TicketInfo", "Known", "datetime"]
