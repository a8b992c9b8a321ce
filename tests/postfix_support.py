"""Tests through a real, private Postfix (postdesk.testing.desk) with the
tests' base configuration, the support mail they send, and the wait for
Postfix's queue to empty."""

from __future__ import annotations

import uuid
from pathlib import Path

from postdesk.testing.desk import LmtpDesk, MilterDesk, Sections
from postdesk.testing.postfix import PrivatePostfix
from postdesk.testing.wait import wait_for
from tests.conftest import BASE_CONFIG


def milter_desk(tmp_path: Path, extra: Sections | None = None) -> MilterDesk:
    """Postfix with the postdesk milter, SQLite store (not started yet)."""
    return MilterDesk(tmp_path, BASE_CONFIG, extra=extra)


def lmtp_desk(tmp_path: Path, store_url: str | None = None, extra: Sections | None = None) -> LmtpDesk:
    """Postfix delivering the support addresses to postdesk lmtp (not started yet)."""
    return LmtpDesk(tmp_path, BASE_CONFIG, store_url=store_url, extra=extra)


def mail(subject: str, msgid: str | None = None, sender="customer@example.org", body="The printer is on fire.\r\n", extra="") -> bytes:
    msgid = msgid or f"{uuid.uuid4().hex}@example.org"
    return (
        f"From: Customer <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{msgid}>\r\nDate: Fri, 27 Nov 2026 23:00:00 +0000\r\n{extra}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def settled(postfix: PrivatePostfix) -> None:
    """Wait until Postfix holds no mail: whatever it accepted has reached the
    sink (which records a mail before its 250) or bounced there.  Counting
    the sink after this is exact, where a sleep would only be likely."""
    wait_for(postfix.queue_empty, 20, "Postfix's queue to empty")
