"""Our own Message-IDs, which carry an HMAC token naming the ticket.

A reply to any mail we sent names our Message-ID in In-Reply-To or
References (RFC 5322 section 3.6.4).  Putting the ticket number and an HMAC
over it in the id lets the filter thread such a reply even when the store
has no record of that id, and proves the author received mail from us
(so they are not a "stranger", docs/filter.md rule 9), without trusting a number
anyone could type.

Format (without <>): ``pd.<ticket>.<random>.<hmac10>@<domain>``, where
hmac10 is the first 10 hex digits of HMAC-SHA256(secret, "pd.<ticket>.<random>").
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "pd"
_LOCAL = re.compile(r"pd\.(\d{1,10})\.([0-9a-f]{8,32})\.([0-9a-f]{10})", re.IGNORECASE)


def _token(ticket: int, nonce: str, secret: bytes) -> str:
    return hmac.new(secret, f"{PREFIX}.{ticket}.{nonce}".encode("ascii"), hashlib.sha256).hexdigest()[:10]


def make_message_id(ticket: int, secret: bytes, domain: str) -> str:
    """A fresh Message-ID (without <>) for a mail about ``ticket``."""
    if not secret:
        raise ValueError("make_message_id: empty secret")
    ticket = int(ticket)
    if ticket < 0:
        raise ValueError("make_message_id: negative ticket number")
    domain = (domain or "").strip().strip("<>").lower() or "localhost"
    if any(c.isspace() or c in "<>@" for c in domain):
        raise ValueError(f"make_message_id: bad domain {domain!r}")
    nonce = secrets.token_hex(8)
    return f"{PREFIX}.{ticket}.{nonce}.{_token(ticket, nonce, secret)}@{domain}"


def ticket_from_message_id(msgid: str, secret: bytes) -> int | None:
    """The ticket named by one of our Message-IDs, if its HMAC verifies; else None."""
    if not msgid or not secret or not isinstance(msgid, str):
        return None
    local, at, _domain = msgid.strip().strip("<>").rpartition("@")
    if not at:
        return None
    m = _LOCAL.fullmatch(local)
    if not m:
        return None
    number, nonce, token = int(m.group(1)), m.group(2).lower(), m.group(3).lower()
    if not hmac.compare_digest(_token(number, nonce, secret), token):
        return None
    return number
