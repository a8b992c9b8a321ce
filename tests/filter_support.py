"""An in-memory ``Known`` (the store's read-only view) for the filter's tests.

The filter is pure: besides the mail, the envelope and the configuration,
this view is its only input.  Message-IDs are compared without <>.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from postdesk.filter.decision import TicketInfo


def _strip(mid: str) -> str:
    mid = mid.strip()
    return mid[1:-1] if mid.startswith("<") and mid.endswith(">") else mid


def ticket_info(number: int, requester: str, participants: Iterable[str] = (), status: str = "open") -> TicketInfo:
    """A ticket as the filter sees it; the requester is always a participant."""
    requester = requester.lower()
    return TicketInfo(number, status, requester, frozenset(p.lower() for p in participants) | {requester})


class MemoryKnown:
    def __init__(
        self,
        tickets: Iterable[TicketInfo] = (),
        ids: Mapping[str, int] | None = None,
        seen: Iterable[str] = (),
        secret: bytes = b"test-secret",
        sent: Mapping[str, tuple[str, int]] | None = None,
        opened: Iterable[tuple[str, datetime, bool]] = (),
        sent_at: Mapping[tuple[str, int], Sequence[datetime]] | None = None,
        authored_at: Mapping[tuple[str, int], Sequence[datetime]] | None = None,
        opened_verified: Iterable[tuple[str, datetime, bool]] = (),
    ) -> None:
        """``seen``: message keys, or (key, digest) pairs for one content only;
        ``sent``: our Message-ID -> (recipient, ticket); ``opened``: (requester,
        created_at, forged) of earlier tickets, for the new-ticket rate."""
        self.tickets = {t.number: t for t in tickets}
        self.ids = {_strip(k): v for k, v in (ids or {}).items()}
        self.seen = {(_strip(k), "") if isinstance(k, str) else (_strip(k[0]), k[1]) for k in seen}
        self._secret = secret
        self.sent = {_strip(k): (v[0].lower(), int(v[1])) for k, v in (sent or {}).items()}
        self.opened = list(opened)
        self.opened_verified = list(opened_verified)  # (requester, created_at, opened by authenticated mail)
        self.sent_at = {k: sorted(v, reverse=True) for k, v in (sent_at or {}).items()}
        self.authored_at = {k: sorted(v, reverse=True) for k, v in (authored_at or {}).items()}

    def ticket(self, number: int) -> TicketInfo | None:
        return self.tickets.get(number)

    def ticket_for_message_ids(self, message_ids: Sequence[str]) -> int | None:
        return next((self.ids[_strip(m)] for m in message_ids if _strip(m) in self.ids), None)

    def message_seen(self, message_key: str, digest: str = "") -> bool:
        key = _strip(message_key)
        return (key, "") in self.seen or (key, digest) in self.seen or (not digest and any(k == key for k, _d in self.seen))

    def new_tickets_since(self, address: str, since: datetime, include_forged: bool = False, verified_only: bool = False) -> int:
        if verified_only:
            return sum(1 for a, at, verified in self.opened_verified if a == address.lower() and at >= since and verified)
        return sum(1 for a, at, forged in self.opened if a == address.lower() and at >= since and (include_forged or not forged))

    def sent_mail(self, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        return {_strip(m): self.sent[_strip(m)] for m in message_ids if _strip(m) in self.sent}

    def sent_times(self, address: str, ticket: int, limit: int = 2) -> tuple[datetime, ...]:
        return tuple(self.sent_at.get((address.lower(), ticket), ())[:limit])

    def authored_times(self, address: str, ticket: int, limit: int = 1) -> tuple[datetime, ...]:
        return tuple(self.authored_at.get((address.lower(), ticket), ())[:limit])

    def secret(self) -> bytes:
        return self._secret


def make_draft(raw: bytes | str, config, envelope=None, known=None, auth=None, now: datetime | None = datetime(2026, 1, 1, 12, 0, 0)):
    """A Draft as ``decide`` starts it, for testing one rule alone."""
    from postdesk.auth.result import UNCHECKED
    from postdesk.filter.decision import Envelope
    from postdesk.filter.draft import Draft
    from postdesk.filter.parse import parse

    if isinstance(raw, str):
        raw = raw.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    envelope = envelope or Envelope("c@cust.org", ("support@example.com",), client_address="203.0.113.9")
    return Draft.start(parse(raw), envelope, known if known is not None else MemoryKnown(), config, now, auth or UNCHECKED)


def headers_only(headers: str, body: str = "x") -> bytes:
    return (headers.replace("\n", "\r\n") + "\r\n\r\n" + body).encode()
