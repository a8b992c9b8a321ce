"""An in-memory ``Known`` (the store's read-only view) for the filter's tests.

The filter is pure: besides the mail, the envelope and the configuration,
this view is its only input.  Message-IDs are compared without <>.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

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
    ) -> None:
        self.tickets = {t.number: t for t in tickets}
        self.ids = {_strip(k): v for k, v in (ids or {}).items()}
        self.seen = {_strip(k) for k in seen}
        self._secret = secret

    def ticket(self, number: int) -> TicketInfo | None:
        return self.tickets.get(number)

    def ticket_for_message_ids(self, message_ids: Sequence[str]) -> int | None:
        return next((self.ids[_strip(m)] for m in message_ids if _strip(m) in self.ids), None)

    def message_seen(self, message_key: str) -> bool:
        return _strip(message_key) in self.seen

    def secret(self) -> bytes:
        return self._secret
