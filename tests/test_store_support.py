"""Helpers for the store tests: Decisions built by hand (no filter involved)."""

from __future__ import annotations

import uuid
from datetime import datetime

from postdesk.filter.decision import Attachment, Decision, Envelope, Kind

T0 = datetime(2026, 11, 27, 12, 0, 0)

ENVELOPE = Envelope(sender="alice@customer.org", recipients=("support@example.com",), queue_id="4BxT2k1Z3n", client_address="203.0.113.5")


def new(author: str = "alice@customer.org", key: str | None = None, **kw) -> Decision:
    key = key or f"{uuid.uuid4().hex}@customer.org"
    base = dict(
        kind=Kind.NEW,
        message_key=key,
        message_id=key,
        author=author,
        author_name="Alice",
        subject="Printer on fire",
        original_subject="Printer on fire",
        text="It is on fire.\n",
        new_text="It is on fire.",
    )
    base.update(kw)
    return Decision(**base)


def followup(ticket: int, author: str = "alice@customer.org", key: str | None = None, **kw) -> Decision:
    key = key or f"{uuid.uuid4().hex}@mail.test"
    base = dict(
        kind=Kind.FOLLOWUP,
        ticket=ticket,
        message_key=key,
        message_id=key,
        author=author,
        subject="Printer on fire",
        text="More.\n",
        new_text="More.",
    )
    base.update(kw)
    return Decision(**base)


def staff_reply(ticket: int, author: str = "bob@example.com", **kw) -> Decision:
    kw.setdefault("staff", True)
    kw.setdefault("notify_team", False)
    kw.setdefault("send_ack", False)
    kw.setdefault("flags", frozenset({"staff"}))
    return followup(ticket, author=author, **kw)


def record(store, decision: Decision, config, now: datetime = T0, envelope: Envelope = ENVELOPE):
    return store.record(lambda known: decision, envelope, config, now)


def attachment(data: bytes, filename: str = "a.bin", content_type: str = "application/octet-stream") -> Attachment:
    return Attachment(filename=filename, content_type=content_type, data=data)
