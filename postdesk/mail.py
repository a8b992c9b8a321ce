"""The desk's own mail vocabulary, shared by the milter, the pipe(8)
adapter, the filter and the notifier.

- ``TICKET_HEADER`` / ``OUTCOME_HEADER``: what the milter adds to a message
  it recorded (ticket number, outcome), for the mailbox and the log;
  ``TICKET_HEADER`` also marks the notifier's mail.
- ``LOOP_HEADER``: on every mail the notifier sends, naming our
  ``reply_to``; mail that comes back carrying it is our own (filter rule
  "loop").
- ``REPLY_MARKER``: the first line of customer mail; the filter cuts a
  reply at it, so only what was typed above it is new.
- ``strip_brackets``: an envelope address as Postfix hands it to the milter
  (``<jane@example.org>``, ``<>``) or to pipe(8) (bare), made bare.

Constants only, and no imports: the filter (pure) and the pipe's start-up
(one process per message) may import it freely.
"""

from __future__ import annotations

TICKET_HEADER = "X-Postdesk-Ticket"
OUTCOME_HEADER = "X-Postdesk-Outcome"
LOOP_HEADER = "X-Postdesk-Loop"

REPLY_MARKER = "##- Please type your reply above this line -##"


def strip_brackets(address: str | None) -> str:
    """``<a@b>`` -> ``a@b``, ``<>`` -> ``""`` (the null sender), a bare address unchanged."""
    value = (address or "").strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value
