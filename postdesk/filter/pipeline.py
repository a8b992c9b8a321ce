"""decide(): the filter's rules run in their declared order.

Pure: the parsed message, the envelope, a read-only view of the store
(``Known``), the configuration, the clock and the authentication verdict
in; a ``Decision`` out.  No I/O, no clock reads.  The rules and their order
are in ``postdesk.filter.rules`` (and docs/filter.md); this module only
runs them.
"""

from __future__ import annotations

from datetime import datetime

from postdesk.auth.result import UNCHECKED, AuthResult
from postdesk.config import Config
from postdesk.filter.decision import Decision, Envelope, Known
from postdesk.filter.draft import Draft
from postdesk.filter.parse import Parsed
from postdesk.filter.rules import RULES


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
