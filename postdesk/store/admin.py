"""What ``postdesk ticket|action|attachment|outbox ...`` does to the store.

Mixed into ``Store``; every method is one transaction.  Read-only commands
use a deferred BEGIN on SQLite so they never queue behind the milter.
Changes a customer should hear about (a status change when
``status_change_emails`` is on, the ticket made visible, an action made
public) schedule the debounced customer update.  A missing ticket, action
or attachment raises ``LookupError`` with a message fit for the terminal.
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import selectinload

from postdesk.store.apply import change_status, set_owner
from postdesk.store.blobs import Blob, BlobMissing
from postdesk.store.merge import merge
from postdesk.store.models import Action, Attachment, Outbox, Person, Ticket
from postdesk.store.updates import queue_updates

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from postdesk.config import Config

STATUSES = ("open", "pending", "closed")
_FOLLOW_UP = re.compile(r"(\d{1,10})\]")


def ticket_page(status: str | None, department: str | None = None) -> Select:
    """Tickets numbered above ``:after``, ``:limit`` of them, in number
    order: a page reads only its rows through the unique index on number,
    however many tickets the store holds (``postdesk ticket list``)."""
    q = select(Ticket).where(Ticket.number > bindparam("after")).order_by(Ticket.number).limit(bindparam("limit"))
    if status is not None:
        q = q.where(Ticket.status == status)
    if department is not None:
        q = q.where(Ticket.department == department)
    return q


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def ticket_dict(t: Ticket) -> dict[str, Any]:
    return {
        "number": t.number,
        "subject": t.subject,
        "status": t.status,
        "visible_to_customers": bool(t.visible_to_customers),
        "requester": t.requester.address,
        # The [[departments]] name; null for the default ([organization]).
        "department": t.department or None,
        "owner": t.owner.address if t.owner is not None else None,
        "created_at": _iso(t.created_at),
        "updated_at": _iso(t.updated_at),
        "merged_into": t.merged_into,
        "closed_at": _iso(t.closed_at),
        "last_public_staff_at": _iso(t.last_public_staff_at),
        "reminded_at": _iso(t.reminded_at),
        "language": t.language or "",
    }


def follow_up_of(t: Ticket) -> int | None:
    """The ticket this one follows up: named by its first action (rule "reopen")."""
    for a in t.actions[:1]:
        m = _FOLLOW_UP.search(a.text or "") if a.kind == "system" and "follow-up" in (a.flags or "").split() else None
        if m:
            return int(m.group(1))
    return None


def attachment_dict(a: Attachment) -> dict[str, Any]:
    return {
        "id": a.id,
        "filename": a.filename,
        "content_type": a.content_type,
        "size": a.size,
        "sha256": a.sha256,
        "content_id": a.content_id,
        "inline": bool(a.inline),  # shown in the action's HTML by its cid:
    }


def _auth(value: str) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return {k: data.get(k) for k in ("spf", "dkim", "dmarc", "verified")} if isinstance(data, dict) else None


def action_dict(a: Action) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "author": a.author.address if a.author is not None else None,
        "public": bool(a.public),
        "text": a.text,
        "new_text": a.new_text,
        "html": a.html or "",  # sanitised (postdesk.sanitise); "" for a text-only mail
        "flags": a.flags.split() if a.flags else [],
        "message_id": a.message_id,
        "queue_id": a.queue_id,
        "delivered_to": a.delivered_to.split() if a.delivered_to else [],
        # RFC 8601 words; null when the message was not checked (or is no message)
        "auth": _auth(a.auth),
        "created_at": _iso(a.created_at),
        "attachments": [attachment_dict(x) for x in a.attachments],
    }


def outbox_dict(o: Outbox, number: int | None) -> dict[str, Any]:
    return {
        "id": o.id,
        "kind": o.kind,
        "ticket": number,
        "action_id": o.action_id,
        "recipient": o.recipient,
        "state": o.state,
        "due_at": _iso(o.due_at),
        "created_at": _iso(o.created_at),
        "attempts": o.attempts,
        "last_error": o.last_error,
        "message_id": o.message_id,
        "queue_id": o.queue_id,
        "sent_at": _iso(o.sent_at),
    }


class AdminMixin:
    """Needs ``self.session(read_only=...)`` and ``self.blob(sha256)``."""

    if TYPE_CHECKING:
        # Provided by postdesk.store.core.Store.
        def session(self, *, read_only: bool = False) -> contextlib.AbstractContextManager[Session]: ...

        def blob(self, sha256: str) -> Blob: ...

    def list_tickets(
        self, status: str | None = None, department: str | None = None, *, after: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Tickets in number order: those numbered above ``after``, at most
        ``limit`` of them (None: all); optionally of one status and one
        department (its stored name; "" for the default department)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        with self.session(read_only=True) as s:
            if limit is None:
                q = select(Ticket).order_by(Ticket.number)
                if status is not None:
                    q = q.where(Ticket.status == status)
                if department is not None:
                    q = q.where(Ticket.department == department)
                if after is not None:
                    q = q.where(Ticket.number > after)
                rows = s.scalars(q.options(selectinload(Ticket.requester), selectinload(Ticket.owner)))
            else:
                q = ticket_page(status, department).options(selectinload(Ticket.requester), selectinload(Ticket.owner))
                rows = s.scalars(q, {"after": after if after is not None else -(2**31), "limit": limit})
            return [ticket_dict(t) for t in rows]

    def show_ticket(self, number: int) -> dict[str, Any] | None:
        with self.session(read_only=True) as s:
            t = s.scalar(
                select(Ticket)
                .where(Ticket.number == number)
                .options(
                    selectinload(Ticket.actions).selectinload(Action.attachments),
                    selectinload(Ticket.actions).selectinload(Action.author),
                    selectinload(Ticket.participants),
                )
            )
            if t is None:
                return None
            out = ticket_dict(t)
            out["follow_up_of"] = follow_up_of(t)
            out["participants"] = [
                {"address": p.person.address, "name": p.person.name, "role": p.role, "last_update_action_id": p.last_update_action_id}
                for p in sorted(t.participants, key=lambda p: p.id)
            ]
            out["actions"] = [action_dict(a) for a in t.actions]
            return out

    def _ticket(self, s, number: int) -> Ticket:
        t = s.scalar(select(Ticket).where(Ticket.number == number).with_for_update())
        if t is None:
            raise LookupError(f"no ticket #{number}")
        return t

    def set_status(self, number: int, status: str, config: Config, now: datetime) -> bool:
        """Open or close ticket ``number``; False when it already had that status."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self.session() as s:
            t = self._ticket(s, number)
            if t.status == status:
                return False
            change_status(s.connection(), t.id, t.status, status, None, now)
            if config.organization.status_change_emails:
                queue_updates(s.connection(), t.id, bool(t.visible_to_customers), now, config)
            return True

    def assign(self, number: int, address: str | None, config: Config, now: datetime) -> bool:
        """Make staff member ``address`` the owner of ticket ``number`` (None:
        nobody); False when it already was.  ``address`` must be staff
        (``[organization] staff``); the caller checks it, this stores it."""
        with self.session() as s:
            t = self._ticket(s, number)
            owner_id = None
            if address is not None:
                address = address.strip().lower()
                person = s.scalar(select(Person).where(Person.address == address))
                if person is None:
                    person = Person(address=address, name="", staff=True)
                    s.add(person)
                    s.flush()
                elif not person.staff:
                    person.staff = True
                owner_id = person.id
            changed = set_owner(s.connection(), t.id, owner_id)
            if changed:
                t.updated_at = now
            return changed

    def merge_tickets(self, source: int, into: int, config: Config, now: datetime) -> int:
        """``postdesk ticket merge M N`` (postdesk.store.merge); returns the
        number merged into (the end of N's chain).  Raises MergeRefused or
        LookupError with a message fit for the terminal."""
        with self.session() as s:
            return merge(s.connection(), source, into, now, None, config.organization.tag)

    def set_visibility(self, number: int, visible: bool, config: Config, now: datetime) -> bool:
        """The ticket-level "visible to customers" flag; True when it changed."""
        with self.session() as s:
            t = self._ticket(s, number)
            if bool(t.visible_to_customers) == bool(visible):
                return False
            t.visible_to_customers = bool(visible)
            t.updated_at = now
            s.flush()
            if visible:
                queue_updates(s.connection(), t.id, True, now, config)
            return True

    def toggle_action(self, action_id: int, config: Config, now: datetime) -> bool:
        """Flip an action private <-> public; returns the new ``public``."""
        with self.session() as s:
            a = s.get(Action, action_id)
            if a is None:
                raise LookupError(f"no action {action_id}")
            t = self._ticket(s, a.ticket.number)
            a.public = not a.public
            t.updated_at = now
            s.flush()
            if a.public:
                exclude = {a.author.address} if a.author is not None else set()
                exclude.update(a.delivered_to.split())
                queue_updates(s.connection(), t.id, bool(t.visible_to_customers), now, config, exclude)
            return bool(a.public)

    def attachment(self, attachment_id: int) -> tuple[dict[str, Any], Blob]:
        """Metadata of attachment ``attachment_id`` and its bytes (a Blob,
        read in chunks and checked against its sha256 when iterated, from
        whichever backend holds it); LookupError when either is missing."""
        with self.session(read_only=True) as s:
            a = s.get(Attachment, attachment_id)
            if a is None:
                raise LookupError(f"no attachment {attachment_id}")
            info = attachment_dict(a)
            info["action_id"] = a.action_id
            info["ticket"] = a.action.ticket.number
        try:
            blob = self.blob(info["sha256"])
        except BlobMissing as e:
            raise LookupError(f"attachment {attachment_id}: its bytes are missing ({e})") from None
        return info, blob

    def list_outbox(self) -> list[dict[str, Any]]:
        with self.session(read_only=True) as s:
            rows = s.execute(select(Outbox, Ticket.number).join(Ticket, Ticket.id == Outbox.ticket_id).order_by(Outbox.id)).all()
            return [outbox_dict(o, n) for o, n in rows]
