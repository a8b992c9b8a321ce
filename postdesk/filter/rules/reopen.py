"""Rule "reopen": a customer's reply to a pending or closed ticket.

- Pending (waiting for the customer): the reply sets it open.
- Closed, within ``[lifecycle] reopen_window`` seconds of closing: the reply
  reopens it (the status mail goes out per ``status_change_emails``).
- Closed longer than that: the reply opens a new ticket whose first action
  names the old one ("Follow-up to [#N]", ``Decision.follow_up_of``).
- A reply that says only thanks changes nothing: it is recorded as an
  ordinary action on the closed ticket, flagged ``thanks``, and alerts
  nobody.  "Only thanks" is: a new text of at most ``thanks_max_chars``
  characters, with no question mark, holding one of ``thanks_phrases``
  (English, German and French by default) as words, and none of the words
  that turn a thank-you into a report ("but", "still", "not", "again",
  "aber", "noch", "nicht", "wieder", "mais", "encore", "pas", ...).
  Anything longer, any question, is taken for a real reply.

Only a customer's own reply counts: a participant of the ticket (not a
stranger), not staff (they have ``[open]``), and not mail the rules before
made private or silent (automatic, bounces, forged or unproven senders).
"""

from __future__ import annotations

import re
from datetime import timedelta

from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft

# Mail of these kinds is no person's reply.
NOT_A_REPLY = frozenset({"auto", "bounce", "forged", "untrusted", "loop"})
_WORD_EDGE = r"(?<![\w])"
# "Thanks, but it still does not work": words that make a thank-you a report.
_BUT = re.compile(
    r"(?<!\w)(?:but|still|not|n't|again|however|problem|error|aber|noch|nicht|kein|wieder|leider|fehler|problem"
    r"|mais|encore|pas|toujours|erreur|probl[eè]me)(?!\w)"
)


def only_thanks(new_text: str, phrases: tuple[str, ...] | list[str], max_chars: int) -> bool:
    """The new text says thanks and nothing that needs an answer (module docstring)."""
    text = " ".join((new_text or "").split())
    if not text or len(text) > max_chars or "?" in text or "\uff1f" in text:
        return False
    lower = text.lower().replace("\u2019", "'")
    if _BUT.search(lower):
        return False
    return any(re.search(_WORD_EDGE + re.escape(p.lower()) + r"(?!\w)", lower) for p in phrases if p.strip())


def apply(d: Draft) -> Decision | None:
    if d.kind is not Kind.FOLLOWUP or d.ticket is None or d.staff or not d.public:
        return None
    if d.flags & NOT_A_REPLY:
        return None
    info = d.known.ticket(d.ticket)
    if info is None or d.author not in info.participants:
        return None  # rule "stranger" deals with newcomers
    if info.status == "pending":
        d.status = "open"
        return None
    if info.status != "closed":
        return None
    lc = d.config.lifecycle
    if only_thanks(d.new_text, lc.thanks_phrases, int(lc.thanks_max_chars)):
        d.flags.add("thanks")
        d.notify_team = False
        return None
    within = info.closed_at is None or d.now is None or d.now - info.closed_at <= timedelta(seconds=float(lc.reopen_window))
    if within:
        d.status = "open"
        d.flags.add("reopened")
    else:
        d.follow_up_of = d.ticket
        d.ticket = None  # a new ticket: rules "team_alert" and "ack" treat it as one
        d.flags.add("follow-up")
    return None
