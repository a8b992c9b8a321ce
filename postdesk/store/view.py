"""The filter's read-only view of the store (``postdesk.filter.decision.Known``).

Built on the connection of the transaction that will apply the Decision, so
what the filter sees is what gets written against.  Plain Core statements,
built once: the filter asks on every message.
"""

from __future__ import annotations

from typing import Callable, Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from postdesk.filter.decision import TicketInfo
from postdesk.store.models import MessageId, Participant, Person, Ticket
from postdesk.store.text import message_key as _key

_T = Ticket.__table__
_M = MessageId.__table__
_P = Participant.__table__
_PE = Person.__table__

_TICKET = (
    select(_T.c.id, _T.c.number, _T.c.status, _PE.c.address)
    .join(_PE, _PE.c.id == _T.c.requester_id)
    .where(_T.c.number == bindparam("number"))
)
_PARTICIPANT_ADDRESSES = (
    select(_PE.c.address).join(_P, _P.c.person_id == _PE.c.id).where(_P.c.ticket_id == bindparam("t_id"))
)
_TICKETS_OF_KEYS = (
    select(_M.c.key, _T.c.number)
    .join(_T, _M.c.ticket_id == _T.c.id)
    .where(_M.c.key.in_(bindparam("keys", expanding=True)))
)
_SEEN = select(_M.c.id).where(_M.c.key == bindparam("key")).limit(1)


class KnownView:
    def __init__(self, conn: Connection, secret: Callable[[], bytes]):
        self._conn = conn
        self._secret = secret

    def ticket(self, number: int) -> TicketInfo | None:
        row = self._conn.execute(_TICKET, {"number": number}).first()
        if row is None:
            return None
        t_id, number, status, requester = row
        addresses = self._conn.execute(_PARTICIPANT_ADDRESSES, {"t_id": t_id}).scalars().all()
        return TicketInfo(
            number=number,
            status=status,
            requester=requester,
            participants=frozenset(addresses) | {requester},
        )

    def ticket_for_message_ids(self, message_ids: Sequence[str]) -> int | None:
        keys = [_key(m) for m in message_ids if m and m.strip().strip("<>")]
        if not keys:
            return None
        # The ids come in the order that matters (In-Reply-To first, then
        # References newest first, RFC 5322 section 3.6.4): the first one we
        # know decides, so a References chain that crosses two tickets
        # follows the message actually replied to.
        found = dict(self._conn.execute(_TICKETS_OF_KEYS, {"keys": keys}).all())
        return next((found[k] for k in keys if k in found), None)

    def message_seen(self, message_key: str) -> bool:
        return self._conn.execute(_SEEN, {"key": _key(message_key)}).first() is not None

    def secret(self) -> bytes:
        return self._secret()
