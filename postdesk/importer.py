"""``postdesk import FILE|MAILDIR...``: record mail that bypassed the milter.

With ``milter_default_action = tempfail`` (Postfix's default) no mail gets
past a stopped milter: senders retry.  With ``accept`` (or a milter
removed from smtpd_milters for a while) support mail is delivered to the
support mailbox with no ticket.  Give its delivered copies to this command,
as mbox files or Maildirs: each message goes through the same path as at
SMTP time (``postdesk.ingest.ingest``: parse, decide, one store
transaction), so a message the milter already recorded is a duplicate
(same Message-ID) and nothing is recorded twice: running the import again is
harmless.

The envelope comes from the delivered copy: the sender from
``Return-Path:``, the recipient from ``X-Original-To:``/``Delivered-To:``
(Postfix's local delivery adds both) or ``--recipient``, else the first
``[organization] system_addresses``.  There is no SMTP client address and no
SASL login: staff replies count as staff only if the sender is trusted by
DKIM/DMARC ([trust]), never by network.

Exit status: 0 when every message was recorded, a duplicate or ignored by
the filter; 65 (EX_DATAERR) when some were refused (over [limits]
max_message_bytes, checked here before ingest as the milter and the pipe do;
each is logged); 66 (EX_NOINPUT) when a source does not exist; 75
(EX_TEMPFAIL) when the store failed: fix it and run the same import again.
"""

from __future__ import annotations

import logging
import mailbox
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from email.utils import getaddresses
from typing import TYPE_CHECKING

from postdesk.config import Config
from postdesk.outcomes import EX_DATAERR, EX_NOINPUT, EX_OK, EX_TEMPFAIL, Outcome, Result, too_big_reason

if TYPE_CHECKING:
    from postdesk.ingest import MessageStore

log = logging.getLogger("postdesk")


def messages(source: str) -> Iterator[tuple[str, bytes]]:
    """(key, raw bytes) of each message in an mbox file or a Maildir."""
    if os.path.isdir(source):
        box: mailbox.Mailbox = mailbox.Maildir(source, factory=None, create=False)
    else:
        box = mailbox.mbox(source, factory=None, create=False)
    try:
        for key in sorted(box.keys()):
            yield f"{source}:{key}", box.get_bytes(key)
    finally:
        box.close()


def _header(raw: bytes, name: str) -> str:
    """The first ``name:`` header of ``raw``, unfolded (headers only)."""
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    value, found = [], False
    for line in head.splitlines():
        if found:
            if line[:1] in (b" ", b"\t"):
                value.append(line.strip())
                continue
            break
        k, sep, v = line.partition(b":")
        if sep and k.strip().lower() == name.lower().encode():
            value.append(v.strip())
            found = True
    return b" ".join(value).decode("utf-8", "replace")


def envelope_of(raw: bytes, config: Config, recipient: str, key: str):
    from postdesk.filter.decision import Envelope

    sender = (getaddresses([_header(raw, "Return-Path")]) or [("", "")])[0][1]
    if recipient:
        rcpt = recipient
    else:
        rcpt = ""
        for name in ("X-Original-To", "Delivered-To"):
            found = (getaddresses([_header(raw, name)]) or [("", "")])[0][1]
            if found:
                rcpt = found
                break
        rcpt = rcpt or config.organization.system_addresses[0]
    return Envelope(sender=sender, recipients=(rcpt,), queue_id=f"IMPORT:{os.path.basename(key)}")


def run(config: Config, sources: list[str], recipient: str = "", store: MessageStore | None = None) -> int:
    from postdesk.ingest import ingest, log_result

    missing = [s for s in sources if not os.path.exists(s)]
    if missing:
        print(f"postdesk: import: no such file or Maildir: {', '.join(missing)}", file=sys.stderr)
        return EX_NOINPUT
    if store is None:
        from postdesk.store import Store

        store = Store.from_config(config)
    counts: Counter[str] = Counter()
    try:
        for source in sources:
            try:
                items = list(messages(source))
            except (OSError, mailbox.Error) as e:
                print(f"postdesk: import: cannot read {source}: {e}", file=sys.stderr)
                return EX_NOINPUT
            for key, raw in items:
                envelope = envelope_of(raw, config, recipient, key)
                if len(raw) > config.limits.max_message_bytes:
                    log_result(envelope, Result(Outcome.REJECTED, reason=too_big_reason(config.limits.max_message_bytes, len(raw))), time.monotonic())
                    counts[Outcome.REJECTED.value] += 1
                    continue
                try:
                    result = ingest(raw, envelope, store, config)
                except Exception as e:  # the store: stop here, the rerun skips what is done
                    log.error("%s: not recorded, stopping: %s: %s", key, type(e).__name__, e)
                    print(f"postdesk: import stopped at {key}: {e}; fix the store and run the same import again (recorded messages are duplicates then)", file=sys.stderr)
                    _summary(counts)
                    return EX_TEMPFAIL
                counts[result.outcome.value] += 1
    finally:
        store.close()
    _summary(counts)
    return EX_DATAERR if counts[Outcome.REJECTED.value] else EX_OK


def _summary(counts: Counter[str]) -> None:
    total = sum(counts.values())
    detail = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing"
    print(f"postdesk: import: {total} message{'s' if total != 1 else ''}: {detail}")
