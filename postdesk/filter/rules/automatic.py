"""Rule "automatic": auto-replies, list mail and bulk mail.

None of it is ever acknowledged (RFC 3834 section 2).

- *Automatic* (flag ``auto``): ``Auto-Submitted`` other than ``no`` (RFC
  3834 section 5), ``Precedence: junk`` / ``auto_reply``, the
  ``X-Autoreply`` / ``X-Autorespond`` markers of autoresponders; and,
  because many autoresponders set none of these, a subject that starts the
  way out-of-office and automatic replies do in the languages our customers
  write (``AUTO_SUBJECTS``); or by behaviour: a reply that came within
  ``AUTO_SECONDS`` of the last mail we sent its author about the ticket,
  when their previous message had also answered our mail before it that
  fast (no person answers twice in a row within seconds; an auto-responder
  does every time).  A machine wrote it: on an existing ticket the
  action is private, the team is not alerted, and it adds nobody (two
  auto-responders on one ticket would otherwise answer each other's updates
  forever).
- *List* (flag ``list``): ``List-Id`` (RFC 2919), ``List-Unsubscribe`` /
  ``List-Post`` (RFC 2369), ``Precedence: list``.
- *Bulk* (flag ``bulk``): ``Precedence: bulk``, Exchange's
  ``X-Auto-Response-Suppress``.

List and bulk headers only ask not to be auto-answered; people's replies
carry them too (through a mailing list, from Outlook), so they suppress the
acknowledgement and nothing else.
"""

from __future__ import annotations

import re
from datetime import timedelta

from postdesk.filter import headers as hdr
from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft
from postdesk.filter.parse import Parsed

_KEYWORD = re.compile(r"\s*(?:\([^()]{0,200}\)\s*)?([\w.-]{1,64})")

# Subjects of auto-replies that carry no RFC 3834 header, matched at the
# start of the subject (after reply prefixes are NOT stripped: an
# auto-reply puts its phrase first, "Automatic reply: <your subject>").
# English, German, French, Spanish, Italian, Dutch, Nordic, Portuguese, Polish.
AUTO_SUBJECTS = (
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "autoresponse",
    "away from the office",
    "vacation reply",
    "abwesenheitsnotiz",
    "abwesenheit",
    "automatische antwort",
    "automatische rückantwort",
    "réponse automatique",
    "reponse automatique",
    "absence",
    "absent du bureau",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "risposta automatica",
    "fuori ufficio",
    "automatisch antwoord",
    "afwezig",
    "autosvar",
    "automatiskt svar",
    "automaattinen vastaus",
    "resposta automática",
    "odpowiedź automatyczna",
)
_AUTO_SUBJECT = re.compile(
    r"\s*(?:" + "|".join(re.escape(s).replace(r"\ ", r"\s+") for s in AUTO_SUBJECTS) + r")(?:\s*[:\-(\[]|\s*$)",
    re.IGNORECASE,
)


# How fast an auto-responder answers: our mail is handed to the local
# Postfix, delivered, answered and sent back within seconds; a person reading
# and writing takes longer than this, and not twice in a row.
AUTO_SECONDS = 30


def answers_like_a_machine(d: Draft) -> bool:
    """This reply and the author's previous one each came within AUTO_SECONDS
    of the mail we had just sent them about this ticket."""
    if d.ticket is None or d.now is None or not d.author:
        return False
    fast = timedelta(seconds=AUTO_SECONDS)
    sent = d.known.sent_times(d.author, d.ticket, 2)
    if len(sent) < 2 or not (timedelta(0) <= d.now - sent[0] <= fast):
        return False
    before = d.known.authored_times(d.author, d.ticket, 1)
    return bool(before) and sent[1] <= before[0] < sent[0] and before[0] - sent[1] <= fast


def _first_word(raw: str) -> str:
    """The keyword of Auto-Submitted/Precedence, without parameters or comments (RFC 3834 5.1 allows CFWS)."""
    m = _KEYWORD.match(hdr.decode_header(raw))
    return m.group(1).lower() if m else ""


def is_auto(parsed: Parsed) -> bool:
    """RFC 3834 Auto-Submitted, Precedence junk/auto_reply, autoresponder markers."""
    for raw in parsed.raw_headers("auto-submitted"):
        if _first_word(raw) not in ("no", ""):
            return True
    for raw in parsed.raw_headers("precedence"):
        if _first_word(raw) in ("junk", "auto_reply"):
            return True
    return parsed.has("x-autoreply") or parsed.has("x-autorespond")


def is_auto_subject(subject: str) -> bool:
    """The subject starts like an out-of-office or automatic reply ("Automatic reply: ...")."""
    return bool(_AUTO_SUBJECT.match(subject[:200] if subject else ""))


def is_list(parsed: Parsed) -> bool:
    """List-Id (RFC 2919), List-Unsubscribe/List-Post (RFC 2369), Precedence list."""
    if parsed.has("list-id") or parsed.has("list-unsubscribe") or parsed.has("list-post"):
        return True
    return any(_first_word(raw) == "list" for raw in parsed.raw_headers("precedence"))


def is_bulk(parsed: Parsed) -> bool:
    """Precedence bulk, Exchange's X-Auto-Response-Suppress ("don't auto-answer me")."""
    if parsed.has("x-auto-response-suppress"):
        return True
    return any(_first_word(raw) == "bulk" for raw in parsed.raw_headers("precedence"))


def apply(d: Draft) -> Decision | None:
    auto = is_auto(d.parsed) or is_auto_subject(d.headers.original_subject) or answers_like_a_machine(d)
    if auto:
        d.flags.add("auto")
    if is_list(d.parsed):
        d.flags.add("list")
    if is_bulk(d.parsed):
        d.flags.add("bulk")
    if d.flags & {"auto", "list", "bulk"}:
        d.send_ack = False
    if auto and d.kind is Kind.FOLLOWUP:
        d.public, d.notify_team = False, False
    return None
