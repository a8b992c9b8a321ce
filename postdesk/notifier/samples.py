"""Sample mails for trying every template at start-up (``templates.load``).

Each kind gets the cases its templates must handle: a named and a nameless
recipient, no subject, a private flagged action with attachments, a
status change (worded and not), an action with HTML and one without, a
new ticket and a reply.  The contexts come from ``compose.context``, the
function that makes the real ones, so a sample cannot drift from the data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from postdesk.outbox_rows import AttachmentInfo, Entry, Job, Person

WHEN = datetime(2026, 1, 2, 3, 4, 5)
CUSTOMER = Person("jane@customer.example", "Jane Doe")
STAFF = Person("bob@example.com", "Bob Staff", staff=True)
TEAM = Person("team@example.com")
IMAGE = AttachmentInfo(1, "screenshot.png", "image/png", 2048, "a" * 64, "image001.png@01DA0000.00000000", inline=True)
PDF = AttachmentInfo(2, "invoice.pdf", "application/pdf", 123456, "b" * 64)

MESSAGE = Entry(1, "message", True, CUSTOMER, "My printer is on fire.\nPlease help.", WHEN, attachments=(PDF,))
HTML = Entry(2, "message", True, STAFF, "Try this:\n\n1. Unplug it", WHEN, attachments=(IMAGE,), html='<p>Try <b>this</b>:</p><ol><li>Unplug it</li></ol><img src="cid:image001.png@01DA0000.00000000">')
PRIVATE = Entry(3, "message", False, Person("carl@stranger.example"), "", WHEN, frozenset({"stranger", "untrusted"}), (PDF,))
EMPTY = Entry(4, "message", True, STAFF, "", WHEN)
STATUS = Entry(5, "status", True, None, "Status changed from open to closed", WHEN)
STATUS_OTHER = Entry(6, "status", True, STAFF, "", WHEN)
AUTO_CLOSE = Entry(9, "status", True, None, "Closed automatically: no answer for 7 days while the ticket was waiting for it.", WHEN, frozenset({"closed", "auto-close"}))
REFUSAL = Entry(7, "message", False, STAFF, "Commands not done:\n[assign nobody]: not a staff address\n[merge #1042]: a ticket cannot be merged into itself", WHEN)
BOUNCE = Entry(8, "system", False, None, "jane@customer.example: 5.1.1 (smtp; 550 5.1.1 user unknown)", WHEN)


def _job(kind: str, entries: tuple[Entry, ...], recipient: Person = CUSTOMER, **kw: Any) -> Job:
    return Job(row_id=0, token=0, kind=kind, ticket=1042, subject=kw.pop("subject", "Printer on fire"), status="closed", recipient=recipient, entries=entries, **kw)


def jobs() -> dict[str, list[Job]]:
    return {
        "ack": [_job("ack", (MESSAGE,)), _job("ack", (EMPTY,), Person("x@customer.example"), subject="")],
        "alert": [
            _job("alert", (MESSAGE,), TEAM),
            _job("alert", (PRIVATE, HTML), TEAM, new_ticket=False, subject=""),
        ],
        "reminder": [_job("reminder", (EMPTY,)), _job("reminder", (EMPTY,), Person("x@customer.example"), subject="")],
        "refusal": [_job("refusal", (REFUSAL,), STAFF)],
        "bounce-alert": [_job("bounce-alert", (BOUNCE,), TEAM), _job("bounce-alert", (EMPTY,), TEAM, subject="")],
        "update": [
            _job("update", (HTML, EMPTY, STATUS, STATUS_OTHER, AUTO_CLOSE, MESSAGE)),
            _job("update", (EMPTY,), Person("x@customer.example"), subject=""),
        ],
    }


def samples() -> dict[str, list[dict[str, Any]]]:
    """Template contexts per kind, with and without HTML."""
    from postdesk.config import defaults
    from postdesk.notifier.compose import context

    config = defaults()
    return {kind: [context(j, config, html) for j in js for html in (False, True)] for kind, js in jobs().items()}
