"""The decision under construction, handed from rule to rule.

``decide()`` (pipeline.py) builds one ``Draft`` from the message, the
envelope, the store's read-only view, the configuration, the clock and the
authentication verdict, then runs the rules of ``postdesk.filter.rules`` in
their declared order.  A rule either returns a final ``Decision`` (the chain
stops: a loop, a duplicate, a deferral) or changes the draft and returns
None; after the last rule ``Draft.finish()`` makes the Decision.

The header fields every rule reads are decoded once, here
(``read_headers``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from postdesk.auth.result import AuthResult
from postdesk.config import Config
from postdesk.filter import headers as hdr
from postdesk.filter import thread as threadmod
from postdesk.filter.decision import Attachment, Decision, Envelope, Kind, Known
from postdesk.filter.parse import Parsed

if TYPE_CHECKING:
    from postdesk.filter.rules.trust import Trust

MAX_KEY = 990  # message_ids.key is VARCHAR(998); a longer "Message-ID" is no identity


@dataclass(frozen=True)
class Headers:
    """What the rules read from the header, decoded once."""

    message_id: str
    message_key: str
    references: tuple[str, ...]
    author: str
    author_name: str
    original_subject: str
    to_cc: tuple[str, ...]


def read_headers(parsed: Parsed, envelope: Envelope) -> Headers:
    ids = hdr.message_ids(parsed.raw_header("message-id"), limit=1)
    message_id = ids[0] if ids and len(ids[0]) <= MAX_KEY else ""
    refs: list[str] = []
    # The order is the order of preference (docs/filter.md, rule "thread"):
    # the store's ticket_for_message_ids answers with the first id it knows.
    # In-Reply-To first, it names the message answered (RFC 5322 3.6.4); then
    # References newest first (RFC 5322 appends the parent's id last), so when
    # the ids name messages of different tickets the one being answered wins.
    in_reply_to = hdr.message_ids(parsed.raw_header("in-reply-to"), limit=20)
    references = hdr.message_ids(parsed.raw_header("references"))
    for i in in_reply_to + references[::-1]:
        if i not in refs and len(i) <= MAX_KEY:
            refs.append(i)
    author, name = "", ""
    for header in ("from", "sender"):
        raw = parsed.raw_headers(header)
        found = hdr.addresses(raw, parsed.charset_hint if not all(v.isascii() for v in raw) else "")
        if found:
            name, author = found[0]
            break
    if not author:
        author = hdr.clean_address(envelope.sender or "")
    to_cc = tuple(a for _n, a in hdr.addresses(parsed.raw_headers("to") + parsed.raw_headers("cc")))
    return Headers(
        message_id=message_id,
        message_key=message_id or f"sha256:{parsed.sha256}",
        references=tuple(refs),
        author=author,
        author_name=name,
        original_subject=parsed.header("subject"),
        to_cc=to_cc,
    )


def headers_of(parsed: Parsed, envelope: Envelope) -> Headers:
    """``read_headers``, once per message (``Parsed.memo``)."""
    return parsed.memo(("headers", envelope.sender), lambda: read_headers(parsed, envelope))


def content_digest(author: str, subject: str, body_sha256: str, refuted: bool, verified: bool = False, to_cc: tuple[str, ...] = ()) -> str:
    """Who sent what: the second half of a message's identity for duplicates.

    A redelivery of one message has the same author, subject, body,
    recipients and verdict; a forged copy that reuses a real Message-ID
    differs in one of them: it failed authentication or could not pass it
    where the real one passed, or it names other To/Cc (to get its
    accomplice onto the ticket), so it never makes the genuine mail a
    duplicate (docs/filter.md, rule "duplicate").
    """
    state = "refuted" if refuted else "verified" if verified else ""
    text = "\0".join((author.lower(), subject, body_sha256, state, ",".join(sorted(a.lower() for a in to_cc))))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def not_ours(addresses: Iterable[str], config: Config) -> tuple[str, ...]:
    """Addresses, cleaned and de-duplicated, without our own."""
    out: list[str] = []
    for a in addresses:
        a = hdr.clean_address(a)
        if a and not config.is_own_address(a) and a not in out:
            out.append(a)
    return tuple(out)


@dataclass
class Draft:
    """The inputs of one decision and what the rules have decided so far."""

    parsed: Parsed
    envelope: Envelope
    known: Known
    config: Config
    now: datetime | None
    auth: AuthResult
    headers: Headers
    ticket: int | None = None  # set by the thread and bounce rules
    ours: frozenset[int] = frozenset()  # tickets named by our own (HMAC-verified) Message-IDs
    flags: set[str] = field(default_factory=set)
    public: bool = True
    send_ack: bool = True
    notify_team: bool = True
    close: bool = False
    staff: bool = False
    cc: tuple[str, ...] = ()
    ack_to: str = ""
    text: str = ""
    new_text: str = ""
    html: str = ""
    attachments: tuple[Attachment, ...] = ()
    department: str = ""  # set by rule "recipients": the department the mail was sent to
    bounce: tuple[tuple[str, str, str], ...] = ()  # rule "bounce": permanently failed recipients of our mail
    # The lifecycle (rules "commands", "reopen", "forwarded", "take"; Decision has the meaning).
    status: str = ""
    owner: str | None = None
    merge_into: int | None = None
    follow_up_of: int | None = None
    forward: bool = False  # [fwd] from verified staff: rule "forwarded" finds the customer
    requester: str = ""
    requester_name: str = ""
    note: str = ""
    refused: list[str] = field(default_factory=list)
    language: str = ""  # set by rule "language": a new ticket's language

    @classmethod
    def start(cls, parsed: Parsed, envelope: Envelope, known: Known, config: Config, now: datetime | None, auth: AuthResult) -> Draft:
        headers = headers_of(parsed, envelope)
        # The verdict vouches only for an author of the domain it judged.
        return cls(parsed, envelope, known, config, now, auth.for_author(headers.author), headers)

    @property
    def kind(self) -> Kind:
        """NEW until a rule found the ticket this message follows up."""
        return Kind.FOLLOWUP if self.ticket is not None else Kind.NEW

    @property
    def author(self) -> str:
        return self.headers.author

    @cached_property
    def digest(self) -> str:
        h = self.headers
        return content_digest(h.author, h.original_subject, self.parsed.body_sha256, self.auth.refuted, self.auth.verified, h.to_cc)

    @cached_property
    def trust(self) -> Trust:
        """Is the author staff, and by what proof (rules/trust.py; read early by rule "recipients")."""
        from postdesk.filter.rules.trust import staff_proof  # the rules import this module

        return staff_proof(self.author, self.envelope, self.config, self.auth)

    def _subject(self) -> str:
        """The subject a new ticket gets: prefixes, our tag and the commands
        of docs/commands.md removed ("[fwd] Invoice" opens "Invoice").
        Anyone's commands: a customer's subject "[merge #1] help" must not
        come back in every alert, where each staff reply would repeat it."""
        from postdesk.filter.commands import strip_commands  # the rules import this module

        subject = threadmod.strip_subject(self.headers.original_subject, self.config.organization.tag)
        if "[" in subject:
            subject = threadmod.strip_subject(strip_commands(subject), self.config.organization.tag)
        return subject

    def _base(self) -> dict[str, Any]:
        h = self.headers
        return dict(
            message_key=h.message_key,
            message_id=h.message_id,
            digest=self.digest,
            references=h.references,
            author=h.author,
            author_name=h.author_name,
            original_subject=h.original_subject,
            subject=self._subject(),
            auth=self.auth,
        )

    def stop(self, kind: Kind, reason: str, *, flags: Iterable[str] = (), ticket: int | None = None) -> Decision:
        """A final decision that records nothing (ignore, duplicate, defer), so mails nobody."""
        return Decision(
            kind=kind, ticket=ticket, flags=frozenset(flags), reason=reason, public=False, send_ack=False, notify_team=False,
            **self._base(),
        )

    def finish(self) -> Decision:
        """The Decision after the last rule."""
        return Decision(
            kind=self.kind,
            ticket=self.ticket,
            text=self.text,
            new_text=self.new_text,
            html=self.html,
            attachments=self.attachments,
            public=self.public,
            close=self.close,
            staff=self.staff,
            send_ack=self.send_ack and bool(self.ack_to),
            ack_to=self.ack_to if self.send_ack else "",
            notify_team=self.notify_team,
            cc=self.cc,
            flags=frozenset(self.flags),
            department=self.department,
            bounce=self.bounce,
            status=self.status,
            owner=self.owner,
            merge_into=self.merge_into,
            follow_up_of=self.follow_up_of,
            requester=self.requester,
            requester_name=self.requester_name,
            note=self.note,
            refused=tuple(self.refused),
            language=self.language,
            **self._base(),
        )
