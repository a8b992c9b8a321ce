"""decide(): the filter's rules run in their declared order.

Pure: the parsed message, the envelope, a read-only view of the store
(``Known``), the configuration, the clock and the authentication verdict
in; a ``Decision`` out.  No I/O, no clock reads.  The rules and their order
are in ``postdesk.filter.rules`` (and docs/filter.md); this module only
runs them.

``read_ahead`` works out beforehand what the rules read from the message
alone (its header fields, text, HTML, attachments and language), so that
inside the store's transaction, where one writer serves every SMTP
session, the rules only look it up (``Parsed.memo``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from postdesk.auth.result import UNCHECKED, AuthResult
from postdesk.config import Config
from postdesk.filter.decision import Decision, Envelope, Known
from postdesk.filter.draft import Draft
from postdesk.filter.draft import headers_of as draft_headers
from postdesk.filter.parse import Parsed
from postdesk.filter.rules import RULES
from postdesk.filter.rules import bounce as bounce_rule
from postdesk.filter.rules import content as content_rule
from postdesk.filter.rules import language as language_rule

log = logging.getLogger("postdesk")


def read_ahead(parsed: Parsed, envelope: Envelope, config: Config) -> None:
    """Compute what decide() will read from the message alone; no store, no clock.

    Called by ``postdesk.ingest.prepare`` on the adapter's own thread.  It
    may do work for a message the rules then ignore (a loop, a duplicate),
    which costs the session, not the writer.  A failure here is left to the
    rule that needs the value, which meets it again inside decide().
    """
    try:
        headers = draft_headers(parsed, envelope)
        if bounce_rule.is_bounce(parsed, envelope, headers.author):
            bounce_rule.read(parsed)
        c = content_rule.read(parsed, config.limits.max_attachments)
        language_rule.read(parsed, c.new_text or c.text)
    except Exception:  # decide() meets it again, where it is answered
        log.debug("read-ahead failed; the rules will read the message themselves", exc_info=True)


def decide(
    parsed: Parsed,
    envelope: Envelope,
    known: Known,
    config: Config,
    now: datetime | None = None,
    auth: AuthResult = UNCHECKED,
) -> Decision:
    """The Decision for one message (docs/filter.md).  Pure: reads only ``known``."""
    draft = Draft.start(parsed, envelope, known, config, now, auth)
    for _name, rule in RULES:
        final = rule(draft)
        if final is not None:
            return final
    return draft.finish()
