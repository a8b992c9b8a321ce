"""Rule "language": the language of a new ticket, from the customer's first mail.

Stored on the ticket; the notifier writes the customer's mail in it when
templates exist for it (``postdesk.notifier.templates``).  Only a new
ticket gets one: a later reply, or a staff member's, does not change the
language the customer started in.  How it is found: ``postdesk.filter.language``.
"""

from __future__ import annotations

from postdesk.filter import language
from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft
from postdesk.filter.parse import Parsed


def read(parsed: Parsed, text: str) -> str:
    """``language.detect``, once per message and text (``Parsed.memo``; see pipeline.read_ahead)."""
    return parsed.memo(("language", text), lambda: language.detect(parsed.message, text))


def apply(d: Draft) -> Decision | None:
    if d.kind is Kind.NEW:
        d.language = read(d.parsed, d.new_text or d.text)
    return None
