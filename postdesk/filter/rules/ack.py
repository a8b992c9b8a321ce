"""Rule "ack": whether, and where, the acknowledgement goes.

An acknowledgement is an automatic reply; sent to the wrong address it is
backscatter (spam with a forged sender, answered by us, gets our MTA
listed).  So, on top of the rules before this one (bounces, automatic,
list, bulk and forged mail are never acknowledged):

- only an authenticated author is acknowledged (``auth.verified``: DMARC
  pass, or an SPF or DKIM pass aligned with From:; or staff proven by rule
  "trust"); with ``[trust] ack_unauthenticated`` also an author that is
  neither authenticated nor refuted; never a refuted one;
- never mail from a no-reply style mailbox (``noreply``, ``no-reply``,
  ``donotreply``, ``mailer``, ``bounce``, ``notifications`` ...: a person
  cannot read the answer), flag ``noreply``;
- never mail a spam filter marked: ``X-Spam-Flag: YES`` (SpamAssassin,
  rspamd) or ``[trust] spam_score_header`` at or above
  ``spam_score_threshold``, flag ``spam``.

The address: RFC 3834 section 4 sends automatic responses to the
Return-Path, i.e. the envelope sender, and that is where it goes when the
envelope sender's organisational domain is From:'s (checked with the
public suffix list).  When it is not (a mailing service's bounce address),
only an author authenticated by DKIM/DMARC is acknowledged, at From:.
A customer's mail verified staff forwarded with ``[fwd]`` is acknowledged
to that customer (rule "forwarded").
"""

from __future__ import annotations

import re

from postdesk.auth import domains
from postdesk.filter import headers as hdr
from postdesk.filter.decision import Decision
from postdesk.filter.draft import Draft

# Local parts of mailboxes nobody reads (compared without "-", "_", "." and a "+tag").
NOREPLY_LOCALS = frozenset(
    {
        "noreply", "donotreply", "dontreply", "noresponse", "mailer", "mailerdaemon",
        "bounce", "bounces", "notification", "notifications", "notify", "alerts", "daemon",
    }
)
_NOT_LETTERS = re.compile(r"[-_.]")
_NUMBER = re.compile(r"[-+]?\d{1,6}(?:\.\d{1,6})?")


def is_noreply(address: str) -> bool:
    local = address.rpartition("@")[0].lower() if "@" in address else ""
    local = _NOT_LETTERS.sub("", local.partition("+")[0])
    return local in NOREPLY_LOCALS or local.startswith("noreply") or local.startswith("donotreply")


def is_spam(d: Draft) -> bool:
    """X-Spam-Flag: YES, or the configured score header at or above the threshold."""
    if any(hdr.decode_header(v).strip().lower().startswith("yes") for v in d.parsed.raw_headers("x-spam-flag")):
        return True
    name = d.config.trust.spam_score_header
    if not name:
        return False
    for raw in d.parsed.raw_headers(name):
        m = _NUMBER.search(hdr.decode_header(raw)[:200])
        if m and float(m.group(0)) >= float(d.config.trust.spam_score_threshold):
            return True
    return False


def aligned(sender: str, author: str) -> bool:
    """The two addresses are of one organisational domain."""
    return domains.aligned(sender.rpartition("@")[2], author.rpartition("@")[2])


def ack_address(d: Draft) -> str:
    """Where the acknowledgement goes, "" for nowhere (see the module docstring)."""
    if d.requester:
        # [fwd]: verified staff forwarded this customer's mail (rule "forwarded").
        return d.requester
    author = d.author
    sender = hdr.clean_address(d.envelope.sender or "")
    if not author or "@" not in author or d.auth.refuted:
        return ""
    authenticated = d.auth.verified or d.staff
    if not (authenticated or d.config.trust.ack_unauthenticated):
        return ""
    if sender and aligned(sender, author):
        return sender
    return author if d.auth.verified else ""


def apply(d: Draft) -> Decision | None:
    # Checked (and flagged) only while an acknowledgement is still due: the
    # flags say why one was not sent.  The envelope sender is not checked:
    # it is often a bounce processor's address (VERP) on mail people wrote,
    # and RFC 3834 section 4 wants automatic responses to go there.
    if d.send_ack and is_noreply(d.requester or d.author):
        d.flags.add("noreply")
        d.send_ack = False
    if d.send_ack and is_spam(d):
        d.flags.add("spam")
        d.send_ack = False
    d.ack_to = ack_address(d) if d.send_ack else ""
    if not d.ack_to:
        d.send_ack = False
    return None
