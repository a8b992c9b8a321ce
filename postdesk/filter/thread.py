"""Step: which ticket a message belongs to, and its stored subject.

docs/filter.md rule 4: a ``[#N]`` tag anywhere in the subject (any case, behind
any chain of reply/forward prefixes); else In-Reply-To/References
(RFC 5322 section 3.6.4) naming a Message-ID the store knows, or one of our
own Message-IDs whose HMAC verifies (``postdesk.msgid``).

The tag prefix is ``[organization] tag`` ("#" by default, but "TKT-" or
"ACME#" work the same).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from postdesk import msgid as msgidmod
from postdesk.filter.decision import Known

MAX_TICKET = 2**31 - 1  # an INTEGER column on every database

# Reply and forward prefixes in the languages our customers write:
# Re, Fwd/Fw, AW/WG (German), SV/VS (Nordic), Antw (Dutch), TR (French),
# RIF (Italian).  "Re[2]:" and "Re(2):" are counted-reply forms some clients write.
# Matched one at a time in a loop (no nested quantifiers: a 100 KB subject of
# spaces must stay linear).
_PREFIX = re.compile(r"(?:re|fwd|fw|aw|wg|sv|vs|antw|tr|rif)[ \t]?(?:\[\d{1,4}\]|\(\d{1,4}\))?[ \t]?:", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=32)
def _tag_re(tag: str) -> re.Pattern[str]:
    return re.compile(r"\[[ \t]?" + re.escape(tag) + r"[ \t]?(\d{1,10})[ \t]?\]", re.IGNORECASE)


def find_tags(subject: str, tag: str, limit: int = 20) -> list[int]:
    """Ticket numbers of every ``[<tag>N]`` in ``subject``, in order, without repeats."""
    out: list[int] = []
    if not subject or not tag:
        return out
    for m in _tag_re(tag).finditer(subject):
        number = int(m.group(1))
        if 0 < number <= MAX_TICKET and number not in out:
            out.append(number)
            if len(out) >= limit:
                break
    return out


def find_tag(subject: str, tag: str) -> int | None:
    """The ticket number of the first ``[<tag>N]`` in ``subject``, or None."""
    tags = find_tags(subject, tag, limit=1)
    return tags[0] if tags else None


def strip_subject(subject: str, tag: str) -> str:
    """Subject without reply/forward prefix chains and without our tag."""
    s = _tag_re(tag).sub(" ", subject or "") if tag else (subject or "")
    s = _SPACES.sub(" ", s).strip()
    for _ in range(100):
        m = _PREFIX.match(s)
        if not m:
            break
        s = s[m.end() :].lstrip()
    return s


@dataclass(frozen=True)
class Thread:
    """Result of threading."""

    ticket: int | None = None  # the ticket this message follows up
    tag: int | None = None  # the number in the subject tag, even if unknown
    unknown_tag: bool = False  # a tag named a ticket that does not exist
    via: str = ""  # "tag" | "references" | "hmac" | ""
    ours: frozenset[int] = frozenset()  # tickets named by our (HMAC-verified) Message-IDs among the references


def hmac_tickets(ids: list[str] | tuple[str, ...], secret: bytes) -> list[int]:
    out: list[int] = []
    if not secret:
        return out
    for i in ids:
        n = msgidmod.ticket_from_message_id(i, secret)
        if n is not None and n not in out:
            out.append(n)
    return out


MAX_CHAIN = 50  # merged-into hops followed; a longer chain is damage, not history


def resolve(known: Known, number: int) -> int:
    """The ticket ``number`` ended in: merged tickets followed to the one
    they were merged into (postdesk.store.merge refuses cycles; a chain is
    followed at most ``MAX_CHAIN`` hops all the same)."""
    seen = {number}
    for _ in range(MAX_CHAIN):
        info = known.ticket(number)
        if info is None or info.merged_into is None or info.merged_into in seen:
            return number
        number = info.merged_into
        seen.add(number)
    return number


def thread(subject: str, references: tuple[str, ...], known: Known, tag: str) -> Thread:
    """Find the ticket of a message (docs/filter.md rule 4)."""
    try:
        secret = known.secret()
    except Exception:
        secret = b""
    ours = frozenset(hmac_tickets(references, secret))
    # Another help desk may have put its own "[#77]" before ours: the first
    # tag naming a ticket that exists wins (rule 4: "for a ticket that exists").
    # Any tag naming no ticket here is flagged (unknown-tag), even when another one matches.
    numbers = find_tags(subject, tag)
    existing = [n for n in numbers if known.ticket(n) is not None]
    unknown = len(existing) < len(numbers)
    if existing:
        # A merged ticket's tag lands on the ticket it was merged into.
        return Thread(ticket=resolve(known, existing[0]), tag=existing[0], unknown_tag=unknown, via="tag", ours=ours)
    number = numbers[0] if numbers else None
    if references:
        # ``references`` is in order of preference: In-Reply-To first, then
        # References newest first (pipeline.read_headers); the store answers
        # with the ticket of the first id it knows, so the message answered wins.
        n = known.ticket_for_message_ids(list(references))
        if n is not None and known.ticket(n) is not None:
            return Thread(ticket=resolve(known, n), tag=number, unknown_tag=unknown, via="references", ours=ours)
        # Same order for our own HMAC-signed Message-IDs.
        for n in hmac_tickets(references, secret):
            if known.ticket(n) is not None:
                return Thread(ticket=resolve(known, n), tag=number, unknown_tag=unknown, via="hmac", ours=ours)
    return Thread(ticket=None, tag=number, unknown_tag=unknown, ours=ours)
