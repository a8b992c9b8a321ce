"""Apply one filter Decision inside the message's transaction.

NEW opens a ticket (number from the ``counters`` row), FOLLOWUP adds an
action to an existing one; both store the attachments, the message's key
(the duplicate guard), the participants, and the outbox rows (ack, team
alert, customer update).  The caller (``Store.record``) owns the
transaction and turns an IntegrityError on ``message_ids.key`` into a
DUPLICATE.

This runs once per support message while the SQLite write lock is held, so
it is written in Core statements on the mapped tables, built once at import
(the ORM's unit of work cost several times the statements themselves);
the admin operations share its status change (``change_status``) and
``postdesk.store.updates.queue_updates``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from postdesk.config import Config
from postdesk.filter.decision import Decision, Envelope, Kind
from postdesk.outcomes import Outcome, Result
from postdesk.store import merge as mergemod
from postdesk.store.blobs import BlobBackend
from postdesk.store.errors import INIT_HINT, StoreNotInitialised
from postdesk.store.fastexec import execute as fast
from postdesk.store.merge import MergeRefused
from postdesk.store.models import Action, Attachment, Counter, MessageId, Outbox, Participant, Person, Ticket
from postdesk.store.text import KEY_MAX, clean, message_key
from postdesk.store.updates import queue_updates

TICKET_COUNTER = "ticket_number"
# The flag of a bounce action that lists failed recipients of our mail
# (their owner or team were alerted).
UNDELIVERED = "undelivered"
# A message with one of these flags is not its author's own mail (refuted
# by SPF/DMARC, a delivery report naming them, an unproven staff claim): it
# does not set what our mail to them answers (In-Reply-To of updates,
# reminders and refusals), whose Message-ID its sender picked.  Their own
# auto-reply does.
NOT_THEIR_OWN = frozenset({"forged", "bounce", "untrusted"})
# A message with one of these flags adds nobody to its ticket.
NO_JOIN_FLAGS = frozenset({"stranger", "bounce", "auto", "list", "bulk", "loop", "untrusted", "forged"})

# The mapped classes' tables (declared as FromClause by the ORM's stubs).
_COUNTERS = cast(Table, Counter.__table__)
_PEOPLE = cast(Table, Person.__table__)
_TICKETS = cast(Table, Ticket.__table__)
_ACTIONS = cast(Table, Action.__table__)
_ATTACHMENTS = cast(Table, Attachment.__table__)
_KEYS = cast(Table, MessageId.__table__)
_PARTICIPANTS = cast(Table, Participant.__table__)
_OUTBOX = cast(Table, Outbox.__table__)

# The statements of the per-message path.  Bind parameter names differ from
# the column names: UPDATE ... SET reserves those.
_NEXT_NUMBER = (
    _COUNTERS.update()
    .where(_COUNTERS.c.name == TICKET_COUNTER)
    .values(value=_COUNTERS.c.value + 1)
    .returning(_COUNTERS.c.value)
)
_SET_NUMBER = _COUNTERS.update().where(_COUNTERS.c.name == TICKET_COUNTER).values(value=bindparam("n_value"))
_INSERT_KEY = _KEYS.insert().returning(_KEYS.c.id)
_KEY_OWNER = _KEYS.update().where(_KEYS.c.id == bindparam("k_id")).values(ticket_id=bindparam("k_ticket"), action_id=bindparam("k_action"))
_TICKET_NUMBER_OF_KEY = (
    select(_TICKETS.c.number).join(_KEYS, _KEYS.c.ticket_id == _TICKETS.c.id).where(_KEYS.c.key == bindparam("key"))
)
_TICKET_NUMBER_OF_KEY_DIGEST = _TICKET_NUMBER_OF_KEY.where(_KEYS.c.digest == bindparam("digest"))
# Lock the ticket row (PostgreSQL; SQLite holds the database write lock).
_LOCK_TICKET = (
    select(
        _TICKETS.c.id,
        _TICKETS.c.number,
        _TICKETS.c.status,
        _TICKETS.c.visible_to_customers,
        _TICKETS.c.department,
        _TICKETS.c.owner_id,
    )
    .where(_TICKETS.c.number == bindparam("number"))
    .with_for_update()
)
_INSERT_TICKET = _TICKETS.insert().returning(_TICKETS.c.id)
_TOUCH_TICKET = _TICKETS.update().where(_TICKETS.c.id == bindparam("t_id")).values(updated_at=bindparam("t_updated"))
# A status change starts the clocks again: closed_at for the reopen window,
# and a fresh pending period gets its own reminder (reminded_at cleared).
_SET_STATUS = (
    _TICKETS.update()
    .where(_TICKETS.c.id == bindparam("t_id"))
    .values(
        status=bindparam("t_status"),
        updated_at=bindparam("t_updated"),
        closed_at=bindparam("t_closed_at"),
        reminded_at=None,
    )
)
_PENDING_SINCE = (
    _TICKETS.update()
    .where(_TICKETS.c.id == bindparam("t_id"), _TICKETS.c.last_public_staff_at.is_(None))
    .values(last_public_staff_at=bindparam("t_at"))
)
_SET_OWNER = _TICKETS.update().where(_TICKETS.c.id == bindparam("t_id")).values(owner_id=bindparam("t_owner"))
_OWNER_OF = select(_TICKETS.c.owner_id).where(_TICKETS.c.id == bindparam("t_id"))
_PUBLIC_STAFF_ACTED = (
    _TICKETS.update().where(_TICKETS.c.id == bindparam("t_id")).values(last_public_staff_at=bindparam("t_at"))
)
_ADDRESS_OF = select(_PEOPLE.c.address).where(_PEOPLE.c.id == bindparam("p_id"))
_PERSON = select(_PEOPLE.c.id, _PEOPLE.c.name, _PEOPLE.c.staff).where(_PEOPLE.c.address == bindparam("address"))
_INSERT_PERSON = _PEOPLE.insert().returning(_PEOPLE.c.id)
_UPDATE_PERSON = (
    _PEOPLE.update()
    .where(_PEOPLE.c.id == bindparam("p_id"))
    .values(name=bindparam("p_name"), staff=bindparam("p_staff"))
)
_INSERT_ACTION = _ACTIONS.insert().returning(_ACTIONS.c.id)
_INSERT_ATTACHMENT = _ATTACHMENTS.insert()
# Everyone on a ticket: (participant id, person id, role, address, staff,
# last_message_id).
_PARTICIPANTS_OF = (
    select(
        _PARTICIPANTS.c.id,
        _PARTICIPANTS.c.person_id,
        _PARTICIPANTS.c.role,
        _PEOPLE.c.address,
        _PEOPLE.c.staff,
        _PARTICIPANTS.c.last_message_id,
    )
    .join(_PEOPLE, _PEOPLE.c.id == _PARTICIPANTS.c.person_id)
    .where(_PARTICIPANTS.c.ticket_id == bindparam("t_id"))
)
_INSERT_PARTICIPANT = _PARTICIPANTS.insert()
_UPDATE_PARTICIPANT = (
    _PARTICIPANTS.update()
    .where(_PARTICIPANTS.c.id == bindparam("pt_id"))
    .values(role=bindparam("pt_role"), last_message_id=bindparam("pt_last_message_id"))
)
_INSERT_OUTBOX = _OUTBOX.insert()


def next_ticket_number(conn: Connection | Session, config: Config) -> int:
    """UPDATE ... RETURNING on the counter row: concurrent writers serialise
    on its row lock (PostgreSQL) or on the write lock (SQLite), so numbers
    never collide; a rolled-back message gives its number back."""
    value = fast(conn, _NEXT_NUMBER).scalar_one_or_none()
    if value is None:
        raise StoreNotInitialised(f"the ticket counter is missing; {INIT_HINT}")
    first = int(config.organization.first_ticket_number)
    if value < first:
        # first_ticket_number was raised after init: jump forward once.
        fast(conn, _SET_NUMBER, {"n_value": first})
        value = first
    return value


def _person(conn: Connection, address: str, name: str = "", staff: bool = False, rename: str = "always") -> tuple[int, str, bool]:
    """The person row for ``address``, created when new, its name and staff
    flag brought up to date: (id, stored address, staff as now stored).

    ``rename`` says whose word a display name is taken on (docs/filter.md,
    rule "identity"): "always" (staff, or an authenticated author), "new"
    (unverified mail: names a person only who has no name yet), "never"
    (forged mail: a forger cannot rename anyone)."""
    address = clean(address, 320).lower()
    name = clean(name, 200)
    row = fast(conn, _PERSON, {"address": address}).first()
    if row is None:
        first_name = name if rename != "never" else ""
        p_id = fast(conn, _INSERT_PERSON, {"address": address, "name": first_name, "staff": bool(staff)}).scalar_one()
        return p_id, address, bool(staff)
    p_id, old_name, old_staff = row
    may_rename = rename == "always" or (rename == "new" and not old_name)
    new_name = name if name and may_rename and old_name != name else old_name
    # Only trusted mail sets staff; an untrusted message never clears it.
    new_staff = True if staff and not old_staff else bool(old_staff)
    if new_name != old_name or new_staff != bool(old_staff):
        fast(conn, _UPDATE_PERSON, {"p_id": p_id, "p_name": new_name, "p_staff": new_staff})
    return p_id, address, new_staff


def _status_text(old: str, new: str) -> str:
    return f"Status changed from {old} to {new}"


def change_status(conn: Connection, ticket_id: int, old: str, new: str, author_id: int | None, now: datetime, flags: str = "") -> int:
    """Record a status change as a public "status" action and apply it to
    the ticket; returns the action's id.  The one path for both the
    ``[closed]`` command (``apply``) and ``postdesk ticket status``
    (``postdesk.store.admin``); the caller queues the customer update."""
    text = _status_text(old, new)
    action_id = fast(
        conn,
        _INSERT_ACTION,
        {
            "ticket_id": ticket_id,
            "author_id": author_id,
            "kind": "status",
            "public": True,
            "text": text,
            "new_text": text,
            "flags": flags,
            "message_id": "",
            "queue_id": "",
            "delivered_to": "",
            "created_at": now,
        },
    ).scalar_one()
    # closed_at only while closed: a reopened ticket is not "closed long ago".
    closed_at = now if new == "closed" else None
    fast(conn, _SET_STATUS, {"t_id": ticket_id, "t_status": new, "t_updated": now, "t_closed_at": closed_at})
    if new == "pending":
        # A ticket set pending before any public staff reply is timed from now.
        fast(conn, _PENDING_SINCE, {"t_id": ticket_id, "t_at": now})
    return action_id


def set_owner(conn: Connection, ticket_id: int, owner_id: int | None) -> bool:
    """Make ``owner_id`` (a person id, None: nobody) the ticket's owner;
    False when it already was.  The one path for the ``[take]`` and
    ``[assign]`` commands, the first staff reply and ``ticket assign``."""
    if fast(conn, _OWNER_OF, {"t_id": ticket_id}).scalar_one_or_none() == owner_id:
        return False
    fast(conn, _SET_OWNER, {"t_id": ticket_id, "t_owner": owner_id})
    return True


def bounce_text(failed: tuple[tuple[str, str, str], ...]) -> str:
    """What a bounce says, for people: one paragraph per failed recipient."""
    out = []
    for recipient, status, diagnostic in failed:
        out.append(_bounce_line(recipient))
        out.append(f"  Status: {status or '(none given)'}")
        out.append(f"  Reason: {diagnostic or '(none given)'}")
    return "\n".join(out)


def _bounce_line(recipient: str) -> str:
    return f"Our mail to {recipient or '(unknown recipient)'} could not be delivered."


def _bounces_known(conn: Connection, ticket_id: int, action_id: int, failed: tuple[tuple[str, str, str], ...]) -> bool:
    """Every address of this report was reported on this ticket before: its
    owner or team were alerted then, and each further update to a dead
    address would otherwise alert them again."""
    for recipient, _status, _diagnostic in failed:
        found = conn.execute(
            select(_ACTIONS.c.id)
            .where(
                _ACTIONS.c.ticket_id == ticket_id,
                _ACTIONS.c.id != action_id,
                # Not any bounce: a report the filter did not believe keeps
                # its sender's own text, which could name the line below and
                # silence the alert for a real failure later.
                _ACTIONS.c.flags.contains(UNDELIVERED),
                # The line bounce_text wrote, at a line start: a report's
                # Diagnostic-Code (no line breaks, after "Reason: ") may
                # quote the sentence, and must not stand for it.
                or_(
                    _ACTIONS.c.new_text.startswith(_bounce_line(recipient), autoescape=True),
                    _ACTIONS.c.new_text.contains("\n" + _bounce_line(recipient), autoescape=True),
                ),
            )
            .limit(1)
        ).first()
        if found is None:
            return False
    return True


def alert_recipients(conn: Connection, config: Config, department: str, owner_id: int | None) -> list[str]:
    """Who hears of a customer's reply (or of a bounce) on a ticket of
    ``department``: its team while nobody owns the ticket; once owned, the
    owner, and the team too with ``[lifecycle] owner_alerts =
    "owner_and_team"``."""
    team = list(config.department(department).team)
    if owner_id is None:
        return team
    owner = fast(conn, _ADDRESS_OF, {"p_id": owner_id}).scalar_one_or_none()
    if owner is None:
        return team
    if config.lifecycle.owner_alerts == "owner_and_team":
        return list(dict.fromkeys([owner, *team]))
    return [owner]


def existing_ticket_number(conn: Connection | Session, key: str, digest: str | None = None) -> int | None:
    """The ticket of a recorded message key (with ``digest``: of that content)."""
    if digest is None:
        row = fast(conn, _TICKET_NUMBER_OF_KEY, {"key": message_key(key)}).first()
    else:
        row = fast(conn, _TICKET_NUMBER_OF_KEY_DIGEST, {"key": message_key(key), "digest": digest}).first()
    return row[0] if row else None


def _rename(d: Decision) -> str:
    """Whose display name to believe (see ``_person``)."""
    # Checked first: an authenticated From: of a staff address that is not
    # proven staff (flag untrusted) must not rename the staff member either.
    if d.auth.refuted or d.flags & {"forged", "untrusted"}:
        return "never"
    if d.staff or d.auth.verified:
        return "always"
    return "new"


def _auth_json(d: Decision) -> str:
    """The verdict as stored on the action ("" when the mail was not checked)."""
    if d.auth.source == "none" and not d.auth.verified and not d.auth.refuted:
        return ""
    return json.dumps(d.auth.as_dict(), sort_keys=True)


class _Participants:
    """The ticket's participants as this transaction has them:
    person id -> [participant id (None: new), role, address, staff,
    last_message_id]; ``changed``: existing rows to update."""

    def __init__(self) -> None:
        self.by_person: dict[int, list] = {}
        self.changed: set[int] = set()

    def load(self, conn: Connection, ticket_id: int) -> None:
        for pt_id, person_id, role, address, staff, last in fast(conn, _PARTICIPANTS_OF, {"t_id": ticket_id}):
            self.by_person[person_id] = [pt_id, role, address, bool(staff), last]

    def join(self, person: tuple[int, str, bool], role: str) -> list:
        """What ``participant()`` was: the existing entry (a cc promoted to
        staff by a staff role) or a new one."""
        p_id, address, staff = person
        p = self.by_person.get(p_id)
        if p is not None:
            if role == "staff" and p[1] == "cc":
                p[1] = "staff"
                self.changed.add(p_id)
            return p
        p = self.by_person[p_id] = [None, role, address, staff, ""]
        return p

    def set_last_message_id(self, person_id: int, value: str) -> None:
        self.by_person[person_id][4] = value
        self.changed.add(person_id)

    def write(self, conn: Connection, ticket_id: int, action_id: int) -> None:
        """INSERT the new participants, UPDATE the changed ones."""
        new = [
            {
                "ticket_id": ticket_id,
                "person_id": person_id,
                "role": role,
                "last_update_action_id": action_id,
                "last_message_id": last,
            }
            for person_id, (pt_id, role, _address, _staff, last) in self.by_person.items()
            if pt_id is None
        ]
        if new:
            fast(conn, _INSERT_PARTICIPANT, new)
        for person_id in self.changed:
            pt_id, role, _address, _staff, last = self.by_person[person_id]
            if pt_id is not None:
                fast(conn, _UPDATE_PARTICIPANT, {"pt_id": pt_id, "pt_role": role, "pt_last_message_id": last})

    def for_updates(self) -> list[tuple[str, str, bool]]:
        return [(address, role, staff) for _id, role, address, staff, _last in self.by_person.values()]


def apply(
    conn: Connection,
    d: Decision,
    envelope: Envelope,
    config: Config,
    now: datetime,
    blobs: BlobBackend,
) -> Result:
    if d.kind is Kind.IGNORE:
        return Result(Outcome.IGNORED, ticket=d.ticket, decision=d, reason=d.reason)
    if d.kind is Kind.DEFER:
        # Nothing is written: the sender's MTA keeps the message and retries.
        return Result(Outcome.DEFERRED, decision=d, reason=d.reason)
    if d.kind is Kind.DUPLICATE:
        number = existing_ticket_number(conn, d.message_key, d.digest or None) if d.message_key else None
        return Result(Outcome.DUPLICATE, ticket=number if number is not None else d.ticket, decision=d)

    # Claim the message key first: a racing delivery of the same message
    # blocks on the unique index (PostgreSQL) and fails here, before it has
    # taken a ticket number or written anything else.
    # (The filter always gives a key; an empty one would make every keyless
    # message a duplicate of the first, so it is not stored.)
    key_id = None
    key = message_key(d.message_key)
    if key:
        key_id = fast(conn, _INSERT_KEY, {"key": key, "digest": d.digest, "ours": False, "created_at": now}).scalar_one()

    # Through the blob backend, in this transaction (database rows roll
    # back with the message; a file written for a rolled-back message is
    # an unreferenced blob, harmless).
    stored = [(a, blobs.put(a.data, conn)) for a in d.attachments]

    ticket = None
    if d.kind is Kind.FOLLOWUP and d.ticket is not None:
        # Lock the ticket row (PostgreSQL; SQLite holds the database write
        # lock already): concurrent changes to one ticket serialise, so
        # participants and the queued update row stay single.
        ticket = fast(conn, _LOCK_TICKET, {"number": d.ticket}).first()
    created = ticket is None  # a FOLLOWUP whose ticket vanished opens a new one
    # The number before any person row: every new ticket takes the counter
    # lock first, so two new tickets naming each other's new addresses
    # cannot deadlock on PostgreSQL.
    number = next_ticket_number(conn, config) if created else None

    author_address = (d.author or envelope.sender or "").lower()
    author = _person(conn, author_address, d.author_name, d.staff, _rename(d)) if author_address else None
    cc = [clean(a, 320).lower() for a in d.cc if a and not config.is_own_address(a) and a.lower() != author_address]
    cc = list(dict.fromkeys(cc))

    # [fwd]: the forwarded customer is the requester and wrote the first
    # action; the staff member who forwarded it adds a private note.
    forwarder = None
    if created and d.requester and d.staff:
        forwarder = author
        author = _person(conn, d.requester, d.requester_name, rename="new")
        author_address = author[1]
    if created:
        requester = author or _person(conn, "", "")
        status, visible, department, owner_id = "open", True, d.department, None
        ticket_id = fast(
            conn,
            _INSERT_TICKET,
            {
                "number": number,
                "subject": clean(d.subject or d.original_subject),
                "status": status,
                "visible_to_customers": visible,
                "requester_id": requester[0],
                "created_at": now,
                "updated_at": now,
                "department": d.department,
                "language": d.language,
            },
        ).scalar_one()
    else:
        assert ticket is not None  # created is False
        ticket_id, number, status, visible, department, owner_id = ticket
        fast(conn, _TOUCH_TICKET, {"t_id": ticket_id, "t_updated": now})

    flags = set(d.flags)
    if d.bounce:
        # Its new text is ours (bounce_text), naming each failed recipient:
        # only such actions count as "reported before" (_bounces_known).
        flags.add(UNDELIVERED)
    if created and d.kind is Kind.FOLLOWUP:
        flags.add("unknown-ticket")
    if created and d.follow_up_of is not None:
        # The new ticket's first action names the one it follows up.
        _system_action(conn, ticket_id, None, f"Follow-up to [{config.organization.tag}{d.follow_up_of}]", "follow-up", now)
    public = bool(d.public)
    action_id = fast(
        conn,
        _INSERT_ACTION,
        {
            "ticket_id": ticket_id,
            "author_id": author[0] if author else None,
            "kind": "message",
            "public": public,
            "text": clean(d.text),
            # A bounce's new text is what failed and why (the alert shows it).
            "new_text": clean(bounce_text(d.bounce) if d.bounce else d.new_text),
            "html": clean(d.html),
            "flags": clean(" ".join(sorted(flags)), 200),
            "message_id": clean(d.message_id, KEY_MAX),
            "queue_id": clean(envelope.queue_id, 64),
            # Space-separated: they got this message directly (its To/Cc).
            "delivered_to": " ".join(cc),
            "auth": _auth_json(d),
            "created_at": now,
        },
    ).scalar_one()
    if stored:
        fast(
            conn,
            _INSERT_ATTACHMENT,
            [
                {
                    "action_id": action_id,
                    "sha256": sha,
                    "size": len(a.data),
                    "content_type": clean(a.content_type, 255) or "application/octet-stream",
                    "filename": clean(a.filename, 255),
                    "content_id": clean(a.content_id, 255),
                    "inline": bool(a.inline),
                    "path": blobs.location(sha),
                }
                for a, sha in stored
            ],
        )
    if forwarder is not None and d.note.strip():
        _system_action(conn, ticket_id, forwarder[0], d.note, "fwd-note", now, kind="message")
    if key_id is not None:
        fast(conn, _KEY_OWNER, {"k_id": key_id, "k_ticket": ticket_id, "k_action": action_id})

    # Participants.  The requester wrote the first action: they get the
    # acknowledgement, not an update about it.  People in To/Cc received the
    # message directly.  Nobody starts receiving customer mail through a
    # stranger's message, a bounce or an auto-reply (RFC 3834), or a private
    # one: then only someone already on the ticket is updated.
    participants = _Participants()
    if not created:
        participants.load(conn, ticket_id)
    may_join = (d.public or d.staff) and not (flags & NO_JOIN_FLAGS)
    me = None
    if author is not None:
        if created:
            me = participants.join(author, "requester")
            if forwarder is not None:
                participants.join(forwarder, "staff")
        elif may_join:
            # Someone joining later (say, a colleague the customer forwarded
            # our update to) is told what happens from now on, not the
            # ticket's earlier history.
            me = participants.join(author, "staff" if d.staff else "cc")
        else:
            me = participants.by_person.get(author[0])
        if me is not None and d.message_id and not (flags & NOT_THEIR_OWN):
            participants.set_last_message_id(author[0], clean(d.message_id, KEY_MAX))
    if (created and not (flags & NO_JOIN_FLAGS)) or (d.public and may_join):
        for address in cc:
            participants.join(_person(conn, address), "cc")
    participants.write(conn, ticket_id, action_id)

    # Outbox: acknowledgement and team alert go on the next tick.  The
    # acknowledgement goes where the filter says (the envelope sender,
    # RFC 3834 section 4), else to the author.
    alerts = []
    ack_to = clean(d.ack_to, 320).lower() if d.ack_to else (author[1] if author is not None else "")
    if created and d.send_ack and "@" in ack_to and not config.is_own_address(ack_to):
        alerts.append(_outbox_row("ack", ticket_id, action_id, ack_to, now))
    bounce_news = bool(d.bounce) and not _bounces_known(conn, ticket_id, action_id, d.bounce)
    if d.notify_team or bounce_news:
        # The ticket's department's team, or its owner (README, "Owners").
        kind = "bounce-alert" if d.bounce else "alert"
        for address in alert_recipients(conn, config, department, owner_id):
            if address != author_address:
                alerts.append(_outbox_row(kind, ticket_id, action_id, address, now))
    if alerts:
        fast(conn, _INSERT_OUTBOX, alerts)

    if public:
        # A ticket created just now has no queued update to postpone.
        queue_updates(conn, ticket_id, visible, now, config, {author_address, *cc}, participants.for_updates(), postpone=not created)
    changes: dict[str, str] = {}
    if forwarder is not None:
        changes["requester"] = author_address
    if created and d.follow_up_of is not None:
        changes["follow_up_of"] = str(d.follow_up_of)
    if d.staff and public:
        # The pending reminder and auto-close are timed from here
        # (docs/lifecycle.md), not from any update of the ticket.
        fast(conn, _PUBLIC_STAFF_ACTED, {"t_id": ticket_id, "t_at": now})
    if d.owner is not None:
        owner = _person(conn, d.owner, staff=True, rename="never") if d.owner else None
        if set_owner(conn, ticket_id, owner[0] if owner else None):
            changes["owner"] = owner[1] if owner else "none"
    new_status = d.status or ("closed" if d.close else "")
    if new_status and new_status != status:
        change_status(conn, ticket_id, status, new_status, author[0] if author else None, now, flags=new_status)
        changes["status"] = new_status
        if config.organization.status_change_emails:
            queue_updates(conn, ticket_id, visible, now, config, author_address, participants.for_updates())
    refused = list(d.refused)
    if d.merge_into is not None and d.staff and number is not None:
        try:
            changes["merged_into"] = str(mergemod.merge(conn, number, d.merge_into, now, author[0] if author else None, config.organization.tag))
        except (MergeRefused, LookupError) as e:
            refused.append(f"[merge #{d.merge_into}]: {e}")
    staff_address = forwarder[1] if forwarder is not None else author_address
    if refused and d.staff and "@" in staff_address:
        # One short private mail tells the staff member what was not done
        # (outbox kind "refusal"); the note on the ticket says it to everyone.
        text = "Not done:\n" + "\n".join(f"  {clean(r, 400)}" for r in refused[:20])
        staff = forwarder or author
        note_id = _system_action(conn, ticket_id, staff[0] if staff else None, text, "refused", now)
        fast(conn, _INSERT_OUTBOX, [_outbox_row("refusal", ticket_id, note_id, staff_address, now)])
    return Result(
        Outcome.CREATED if created else Outcome.UPDATED, ticket=number, action_id=action_id, decision=d, changes=changes
    )


def _system_action(conn: Connection, ticket_id: int, author_id: int | None, text: str, flags: str, now: datetime, kind: str = "system") -> int:
    """A private action beside the message (a follow-up's reference, a
    forwarder's note, what was refused); returns its id."""
    return fast(
        conn,
        _INSERT_ACTION,
        {
            "ticket_id": ticket_id, "author_id": author_id, "kind": kind, "public": False, "text": clean(text),
            "new_text": clean(text), "flags": flags, "message_id": "", "queue_id": "", "delivered_to": "", "created_at": now,
        },
    ).scalar_one()


def _outbox_row(kind: str, ticket_id: int, action_id: int, recipient: str, now: datetime) -> dict:
    return {
        "kind": kind,
        "ticket_id": ticket_id,
        "action_id": action_id,
        "recipient": recipient,
        "due_at": now,
        "created_at": now,
        "up_to_action_id": action_id,
    }
