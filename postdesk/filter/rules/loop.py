"""Rule "loop": our own mail coming back is ignored.

Our ``X-Postdesk-Loop`` marker naming our ``reply_to`` (every mail we send
carries it; a list that munges From: still keeps it), or mail whose From: or
envelope sender is one of our own addresses.  Nothing is recorded and
nothing is sent: answering our own mail is how mail loops start (RFC 3834
section 2).
"""

from __future__ import annotations

from postdesk.config import Config
from postdesk.filter import headers as hdr
from postdesk.filter.decision import Decision, Envelope, Kind
from postdesk.filter.draft import Draft
from postdesk.filter.parse import Parsed
from postdesk.mail import LOOP_HEADER


def is_loop(parsed: Parsed, envelope: Envelope, author: str, config: Config) -> bool:
    """Our own marker with our reply_to, or mail from our own addresses."""
    ours = config.organization.reply_to
    for raw in parsed.raw_headers(LOOP_HEADER):
        value = hdr.decode_header(raw).lower().strip().strip("<>").strip()
        if value == ours or any(a == ours for _n, a in hdr.addresses([raw])):
            return True
    sender = hdr.clean_address(envelope.sender or "")
    return bool((author and config.is_own_address(author)) or (sender and config.is_own_address(sender)))


def apply(d: Draft) -> Decision | None:
    if is_loop(d.parsed, d.envelope, d.author, d.config):
        return d.stop(Kind.IGNORE, "loop: our own mail", flags={"loop"})
    return None
