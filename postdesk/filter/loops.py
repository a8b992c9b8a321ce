"""Step: mail we must not answer or must not record (docs/filter.md rules 1, 5, 6).

- Loops (rule 1): our own ``X-Postdesk-Loop`` marker, or mail from one of
  our own addresses.
- Bounces (rule 5): the null reverse-path (RFC 5321 section 4.5.5), an
  envelope sender or From of MAILER-DAEMON, or a message that *is* a
  report: a top-level ``multipart/report`` delivery status notification
  (RFC 3464) or abuse feedback report (RFC 5965).  A report found inside an
  attached message is not one: that is a customer forwarding a bounce to
  us.  ``postmaster@`` with a real sender is a human (RFC 5321 section 4.5.1
  makes it a mailbox people read and write from).
- Automatic mail (rule 6, flag ``auto``): ``Auto-Submitted`` other than
  ``no`` (RFC 3834 section 5), ``Precedence: junk`` / ``auto_reply``, the
  common ``X-Autoreply`` / ``X-Autorespond`` markers of autoresponders.
- List and bulk mail (rule 6, flags ``list`` and ``bulk``): ``List-Id``
  (RFC 2919), ``List-Unsubscribe`` / ``List-Post`` (RFC 2369),
  ``Precedence: list``; ``Precedence: bulk`` and Exchange's
  ``X-Auto-Response-Suppress``.  These say "don't auto-answer me" (RFC 3834
  section 2), not "no human wrote this": only the acknowledgement is
  suppressed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postdesk.config import Config
from postdesk.filter import headers as hdr
from postdesk.filter.decision import Envelope
from postdesk.filter.parse import Parsed

BOUNCE_LOCALS = ("mailer-daemon",)
REPORT_TYPES = ("delivery-status", "feedback-report")
REPORT_PARTS = ("message/delivery-status", "message/global-delivery-status", "message/feedback-report")


@dataclass(frozen=True)
class Automation:
    loop: bool = False
    bounce: bool = False
    auto: bool = False
    list: bool = False
    bulk: bool = False

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(name for name in ("loop", "bounce", "auto", "list", "bulk") if getattr(self, name))

    @property
    def no_ack(self) -> bool:
        """Never acknowledged (RFC 3834 section 2)."""
        return self.auto or self.list or self.bulk


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
    """Rule 5: null sender, MAILER-DAEMON, or a top-level RFC 3464/5965 report."""
    sender = (envelope.sender or "").strip()
    if sender in ("", "<>"):
        return True
    if _local(sender.strip("<>")) in BOUNCE_LOCALS or (author and _local(author) in BOUNCE_LOCALS):
        return True
    return is_report(parsed)


def is_report(parsed: Parsed) -> bool:
    """The message itself is a delivery status or feedback report.

    Only the top level counts (RFC 3464 section 2, RFC 5965 section 2: the
    report is the message's own Content-Type).  A report inside an attached
    message/rfc822 is something a person forwarded, so this never walks into
    attachments.  A ``multipart/report`` missing its report-type parameter
    still counts when one of its own parts is the machine-readable report.
    """
    msg = parsed.message
    try:
        if msg.get_content_type() != "multipart/report":
            return False
        report_type = str(msg.get_param("report-type", "") or "").lower()
        if report_type in REPORT_TYPES:
            return True
        if report_type:
            return False  # e.g. disposition-notification (RFC 8098): a read receipt, not a bounce
        payload = msg.get_payload()
        if not isinstance(payload, list):
            return False
        return any(part.get_content_type() in REPORT_PARTS for part in payload[:20])
    except Exception:
        return False


_KEYWORD = re.compile(r"\s*(?:\([^()]{0,200}\)\s*)?([\w.-]{1,64})")


def _first_word(raw: str) -> str:
    """The keyword of Auto-Submitted/Precedence, without parameters or comments (RFC 3834 5.1 allows CFWS)."""
    m = _KEYWORD.match(hdr.decode_header(raw))
    return m.group(1).lower() if m else ""


def is_auto(parsed: Parsed) -> bool:
    """Rule 6, automatic: RFC 3834 Auto-Submitted, Precedence junk/auto_reply, autoresponder markers."""
    for raw in parsed.raw_headers("auto-submitted"):
        if _first_word(raw) not in ("no", ""):
            return True
    for raw in parsed.raw_headers("precedence"):
        if _first_word(raw) in ("junk", "auto_reply"):
            return True
    return parsed.has("x-autoreply") or parsed.has("x-autorespond")


def is_list(parsed: Parsed) -> bool:
    """Rule 6, list: List-Id (RFC 2919), List-Unsubscribe/List-Post (RFC 2369), Precedence list."""
    if parsed.has("list-id") or parsed.has("list-unsubscribe") or parsed.has("list-post"):
        return True
    return any(_first_word(raw) == "list" for raw in parsed.raw_headers("precedence"))


def is_bulk(parsed: Parsed) -> bool:
    """Rule 6, bulk: Precedence bulk, Exchange's X-Auto-Response-Suppress ("don't auto-answer me")."""
    if parsed.has("x-auto-response-suppress"):
        return True
    return any(_first_word(raw) == "bulk" for raw in parsed.raw_headers("precedence"))


def automation(parsed: Parsed, envelope: Envelope, author: str, config: Config) -> Automation:
    return Automation(
        loop=is_loop(parsed, envelope, author, config),
        bounce=is_bounce(parsed, envelope, author),
        auto=is_auto(parsed),
        list=is_list(parsed),
        bulk=is_bulk(parsed),
    )
