"""Step: mail we must not answer or must not record (docs/filter.md rules 1, 5, 6).

- Loops (rule 1): our own ``X-Postdesk-Loop`` marker, or mail from one of
  our own addresses.
- Bounces (rule 5): the null reverse-path (RFC 5321 section 4.5.5),
  MAILER-DAEMON or postmaster, or a ``multipart/report`` delivery status
  notification (RFC 3464) or abuse feedback report (RFC 5965).
- Automatic and list mail (rule 6): ``Auto-Submitted`` other than ``no``
  (RFC 3834 section 5), ``Precedence: bulk/junk/list`` (RFC 3834 section 2
  asks responders to honour it), ``List-Id`` (RFC 2919) or
  ``List-Unsubscribe`` (RFC 2369), and Exchange's
  ``X-Auto-Response-Suppress``.  RFC 3834 section 2: never auto-reply to
  these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postdesk.config import Config
from postdesk.filter import headers as hdr
from postdesk.filter.decision import Envelope
from postdesk.filter.parse import Parsed

BOUNCE_LOCALS = ("mailer-daemon", "postmaster")
REPORT_TYPES = ("delivery-status", "feedback-report")
REPORT_PARTS = ("message/delivery-status", "message/global-delivery-status", "message/feedback-report")


@dataclass(frozen=True)
class Automation:
    loop: bool = False
    bounce: bool = False
    auto: bool = False
    list: bool = False

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(name for name in ("loop", "bounce", "auto", "list") if getattr(self, name))


def is_loop(parsed: Parsed, envelope: Envelope, author: str, config: Config) -> bool:
    """Rule 1: our own marker with our reply_to, or mail from our own addresses."""
    ours = config.organization.reply_to
    for raw in parsed.raw_headers("x-postdesk-loop"):
        value = hdr.decode_header(raw).lower().strip().strip("<>").strip()
        if value == ours or any(a == ours for _n, a in hdr.addresses([raw])):
            return True
    sender = hdr.clean_address(envelope.sender or "")
    return bool((author and config.is_own_address(author)) or (sender and config.is_own_address(sender)))


def _local(address: str) -> str:
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


def is_bounce(parsed: Parsed, envelope: Envelope, author: str) -> bool:
    """Rule 5: null sender, MAILER-DAEMON/postmaster, or an RFC 3464/5965 report."""
    sender = (envelope.sender or "").strip()
    if sender in ("", "<>"):
        return True
    if _local(sender.strip("<>")) in BOUNCE_LOCALS or (author and _local(author) in BOUNCE_LOCALS):
        return True
    return is_report(parsed)


def is_report(parsed: Parsed) -> bool:
    msg = parsed.message
    try:
        if msg.get_content_type() == "multipart/report":
            report_type = str(msg.get_param("report-type", "") or "").lower()
            if report_type in REPORT_TYPES:
                return True
        if msg.get_content_maintype() != "multipart":
            return False
        for i, part in enumerate(msg.walk()):
            if i > 200:
                break
            if part.get_content_type() in REPORT_PARTS:
                return True
    except Exception:
        return False
    return False


_KEYWORD = re.compile(r"\s*(?:\([^()]{0,200}\)\s*)?([\w.-]{1,64})")


def _first_word(raw: str) -> str:
    """The keyword of Auto-Submitted/Precedence, without parameters or comments (RFC 3834 5.1 allows CFWS)."""
    m = _KEYWORD.match(hdr.decode_header(raw))
    return m.group(1).lower() if m else ""


def is_auto(parsed: Parsed) -> bool:
    """Rule 6, automatic part: RFC 3834 Auto-Submitted, Precedence bulk/junk, Exchange's marker."""
    for raw in parsed.raw_headers("auto-submitted"):
        if _first_word(raw) not in ("no", ""):
            return True
    for raw in parsed.raw_headers("precedence"):
        if _first_word(raw) in ("bulk", "junk", "auto_reply"):
            return True
    # Exchange/Outlook mark auto-replies this way; common autoresponders use the X- ones.
    return parsed.has("x-auto-response-suppress") or parsed.has("x-autoreply") or parsed.has("x-autorespond")


def is_list(parsed: Parsed) -> bool:
    """Rule 6, list part: Precedence list, List-Id (RFC 2919), List-Unsubscribe (RFC 2369)."""
    if parsed.has("list-id") or parsed.has("list-unsubscribe"):
        return True
    return any(_first_word(raw) == "list" for raw in parsed.raw_headers("precedence"))


def automation(parsed: Parsed, envelope: Envelope, author: str, config: Config) -> Automation:
    return Automation(
        loop=is_loop(parsed, envelope, author, config),
        bounce=is_bounce(parsed, envelope, author),
        auto=is_auto(parsed),
        list=is_list(parsed),
    )
