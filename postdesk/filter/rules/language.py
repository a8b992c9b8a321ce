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


def apply(d: Draft) -> Decision | None:
    if d.kind is Kind.NEW:
        text = d.new_text or d.text
        d.language = d.parsed.memo(("language", text), lambda: language.detect(d.parsed.message, text))
    return None
