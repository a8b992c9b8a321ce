"""The filter's read-only view of the store (``postdesk.filter.decision.Known``).

Built on the session of the transaction that will apply the Decision, so
what the filter sees is what gets written against.
"""

from __future__ import annotations

from typing import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from postdesk.filter.decision import TicketInfo
from postdesk.store.models import MessageId, Participant, Person, Ticket
from postdesk.store.text import message_key as _key


class KnownView:
    def __init__(self, session: Session, secret: Callable[[], bytes]):
        self._session = session
        self._secret = secret

    def ticket(self, number: int) -> TicketInfo | None:
        t = self._session.scalar(select(Ticket).where(Ticket.number == number))
        if t is None:
            return None
        addresses = self._session.scalars(
            select(Person.address).join(Participant, Participant.person_id == Person.id).where(Participant.ticket_id == t.id)
        ).all()
        return TicketInfo(
            number=t.number,
            status=t.status,
            requester=t.requester.address,
            participants=frozenset(addresses) | {t.requester.address},
        )

    def ticket_for_message_ids(self, message_ids: Sequence[str]) -> int | None:
        keys = [_key(m) for m in message_ids if m and m.strip().strip("<>")]
        if not keys:
            return None
        # The ids come in the order that matters (In-Reply-To first, then
        # References newest first, RFC 5322 section 3.6.4): the first one we
        # know decides, so a References chain that crosses two tickets
        # follows the message actually replied to.
        found = dict(
            self._session.execute(
                select(MessageId.key, Ticket.number)
                .join(Ticket, MessageId.ticket_id == Ticket.id)
                .where(MessageId.key.in_(keys))
            ).all()
        )
        return next((found[k] for k in keys if k in found), None)

    def message_seen(self, message_key: str) -> bool:
        return self._session.scalar(select(MessageId.id).where(MessageId.key == _key(message_key)).limit(1)) is not None

    def secret(self) -> bytes:
        return self._secret()
