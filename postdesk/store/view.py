"""The filter's read-only view of the store (``postdesk.filter.decision.Known``).

Built on the connection of the transaction that will apply the Decision, so
what the filter sees is what gets written against.  Plain Core statements,
built once: the filter asks on every message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, case, exists, func, select
from sqlalchemy.engine import Connection

from postdesk.filter.decision import TicketInfo
from postdesk.store.fastexec import execute as fast
from postdesk.store.models import Action, MessageId, Outbox, Participant, Person, Ticket
from postdesk.store.text import message_key as _key

_T = Ticket.__table__
_M = MessageId.__table__
_P = Participant.__table__
_PE = Person.__table__
_A = Action.__table__
_O = Outbox.__table__

_OWNER = _PE.alias("owner")
_TICKET = (
    select(_T.c.id, _T.c.number, _T.c.status, _PE.c.address, _T.c.department, _OWNER.c.address, _T.c.merged_into, _T.c.closed_at)
    .join(_PE, _PE.c.id == _T.c.requester_id)
    .outerjoin(_OWNER, _OWNER.c.id == _T.c.owner_id)
    .where(_T.c.number == bindparam("number"))
)
_PARTICIPANT_ADDRESSES = (
    select(_PE.c.address).join(_P, _P.c.person_id == _PE.c.id).where(_P.c.ticket_id == bindparam("t_id"))
)
# One key may name two messages (a forged copy beside the genuine one,
# docs/filter.md rule "duplicate"): forged rows sort first, so the dict built
# from the rows keeps the genuine message's ticket.
_TICKETS_OF_KEYS = (
    select(_M.c.key, _T.c.number)
    .join(_T, _M.c.ticket_id == _T.c.id)
    .outerjoin(_A, _A.c.id == _M.c.action_id)
    .where(_M.c.key.in_(bindparam("keys", expanding=True)))
    .order_by(case((_A.c.flags.like("%forged%"), 0), else_=1), _M.c.id)
)
_SEEN = select(_M.c.id).where(_M.c.key == bindparam("key")).limit(1)
_SEEN_WITH = select(_M.c.id).where(_M.c.key == bindparam("key"), _M.c.digest == bindparam("digest")).limit(1)
# Tickets opened by one requester since a time; a ticket whose first action
# was forged (docs/filter.md, rule "identity") counts only when asked to.
_FORGED = exists().where(_A.c.ticket_id == _T.c.id, _A.c.flags.like("%forged%"))
_OPENED = (
    select(func.count(_T.c.id))
    .join(_PE, _PE.c.id == _T.c.requester_id)
    .where(_PE.c.address == bindparam("address"), _T.c.created_at >= bindparam("since"))
)
_OPENED_GENUINE = _OPENED.where(~_FORGED)
# Opened by mail that was authenticated (actions.auth is sorted JSON).
_VERIFIED = exists().where(_A.c.ticket_id == _T.c.id, _A.c.auth.like('%"verified": true%'))
_OPENED_VERIFIED = _OPENED.where(_VERIFIED)
_SENT_TIMES = (
    select(_O.c.sent_at)
    .join(_T, _T.c.id == _O.c.ticket_id)
    .where(_T.c.number == bindparam("number"), _O.c.recipient == bindparam("address"), _O.c.state == "sent", _O.c.sent_at.is_not(None))
    .order_by(_O.c.sent_at.desc())
    .limit(bindparam("limit"))
)
_AUTHORED_TIMES = (
    select(_A.c.created_at)
    .join(_T, _T.c.id == _A.c.ticket_id)
    .join(_PE, _PE.c.id == _A.c.author_id)
    .where(
        _T.c.number == bindparam("number"),
        _PE.c.address == bindparam("address"),
        _A.c.kind == "message",
        # A forgery in someone's name is not theirs: it must not make their
        # own next reply look like an auto-responder's.
        ~_A.c.flags.contains("forged"),
    )
    .order_by(_A.c.created_at.desc())
    .limit(bindparam("limit"))
)
_SENT = (
    select(_O.c.message_id, _O.c.recipient, _T.c.number)
    .join(_T, _T.c.id == _O.c.ticket_id)
    .where(_O.c.message_id.in_(bindparam("ids", expanding=True)), _O.c.state == "sent")
)


class KnownView:
    def __init__(self, conn: Connection, secret: Callable[[], bytes]):
        self._conn = conn
        self._secret = secret

    def ticket(self, number: int) -> TicketInfo | None:
        row = fast(self._conn, _TICKET, {"number": number}).first()
        if row is None:
            return None
        t_id, number, status, requester, department, owner, merged_into, closed_at = row
        addresses = fast(self._conn, _PARTICIPANT_ADDRESSES, {"t_id": t_id}).scalars().all()
        return TicketInfo(
            number=number,
            status=status,
            requester=requester,
            participants=frozenset(addresses) | {requester},
            department=department or "",
            owner=owner or "",
            merged_into=merged_into,
            closed_at=closed_at,
        )

    def ticket_for_message_ids(self, message_ids: Sequence[str]) -> int | None:
        keys = [_key(m) for m in message_ids if m and m.strip().strip("<>")]
        if not keys:
            return None
        # The ids come in the order that matters (In-Reply-To first, then
        # References newest first, RFC 5322 section 3.6.4): the first one we
        # know decides, so a References chain that crosses two tickets
        # follows the message actually replied to.
        found = dict(fast(self._conn, _TICKETS_OF_KEYS, {"keys": keys}).all())
        return next((found[k] for k in keys if k in found), None)

    def message_seen(self, message_key: str, digest: str = "") -> bool:
        if not digest:
            return fast(self._conn, _SEEN, {"key": _key(message_key)}).first() is not None
        return fast(self._conn, _SEEN_WITH, {"key": _key(message_key), "digest": digest}).first() is not None

    def new_tickets_since(self, address: str, since: datetime, include_forged: bool = False, verified_only: bool = False) -> int:
        query = _OPENED_VERIFIED if verified_only else _OPENED if include_forged else _OPENED_GENUINE
        return int(fast(self._conn, query, {"address": address.lower(), "since": since}).scalar() or 0)

    def sent_mail(self, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        bare = [m.strip().strip("<>") for m in message_ids if m and m.strip().strip("<>")][:50]
        if not bare:
            return {}
        # The outbox keeps the id as the notifier wrote it; look both forms up.
        ids = bare + [f"<{m}>" for m in bare]
        return {mid.strip("<>"): (recipient.lower(), number) for mid, recipient, number in fast(self._conn, _SENT, {"ids": ids})}

    def sent_times(self, address: str, ticket: int, limit: int = 2) -> tuple[datetime, ...]:
        rows = fast(self._conn, _SENT_TIMES, {"number": ticket, "address": address.lower(), "limit": limit}).scalars()
        return tuple(rows)

    def authored_times(self, address: str, ticket: int, limit: int = 1) -> tuple[datetime, ...]:
        rows = fast(self._conn, _AUTHORED_TIMES, {"number": ticket, "address": address.lower(), "limit": limit}).scalars()
        return tuple(rows)

    def secret(self) -> bytes:
        return self._secret()
