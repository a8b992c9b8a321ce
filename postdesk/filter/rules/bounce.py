"""Rule "bounce": delivery reports and feedback reports.

A bounce is mail a mail system wrote about another mail:

- the null reverse-path (RFC 5321 section 4.5.5), or an envelope sender or
  From: of ``MAILER-DAEMON``;
- a message whose own, top-level type is ``multipart/report`` with
  report-type ``delivery-status`` (RFC 3464) or ``feedback-report`` (RFC
  5965, abuse/ARF reports); a report inside an attached message is a person
  forwarding one to us, and is not a bounce;
- from a bounce-style mailbox (``postmaster``, ``mailer``, ``mail-daemon``
  ...) with a real envelope sender: only when flufl.bounce (Mailman's bounce
  detector) recognises one of the ~15 non-standard formats it knows (Exim,
  qmail, Exchange, GroupWise, Yahoo, ...).  That is what flufl.bounce adds:
  the formats that are not RFC 3464, without our own growing list of
  patterns.  It is asked only there, because it finds "bounces" in any mail
  that quotes one (a customer forwarding an NDR) and costs about half a
  millisecond per message; ``postmaster@`` writing as a person
  (RFC 5321 section 4.5.1) stays a person.

A bounce with a ticket (named by the bounce, or by the returned message
inside it: often one of our own acknowledgements) becomes a private action
flagged ``bounce``; nobody is mailed or acknowledged.  Without a ticket it
is ignored.

When it reports a permanent failure (RFC 3464 section 2.3.3: ``Action:
failed``, a 5.x.x ``Status``) of our mail to someone on the ticket, the
failed recipients with their ``Status`` and ``Diagnostic-Code`` go into
``Decision.bounce``: the store then queues one ``bounce-alert`` to the
ticket's owner, or to its department's team when nobody owns it, so a
customer who never gets our answers is noticed by a person.  Only people on
the ticket count: a forged report naming a stranger alerts nobody.  And only
a report proven to be about our own mail counts (``about_our_mail``): the
returned message's Message-ID, or the report's own In-Reply-To/References,
is one of our HMAC-signed Message-IDs (``postdesk.msgid``) of this ticket.
Anyone can send a null-sender ``multipart/report`` with ``[#1000]`` in its
subject; without that proof it stays a private bounce action, and nobody
is alerted with its text.  A non-standard bounce names its recipients
through flufl.bounce (no status).

The returned headers and a report's text are read from at most the first
``MAX_TEXT`` bytes of their part, cut before decoding: a megabyte part in a
slow charset must not cost the store's write transaction.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import HeaderParser

from postdesk.filter import headers as hdr
from postdesk.filter import parts
from postdesk.filter import thread as threadmod
from postdesk.filter.decision import Decision, Envelope, Kind
from postdesk.filter.draft import Draft
from postdesk.filter.parse import Parsed

BOUNCE_LOCALS = ("mailer-daemon",)
# Mailboxes whose mail may be a non-standard bounce; flufl.bounce decides.
BOUNCE_STYLE_LOCALS = ("postmaster", "mailer", "mail-daemon", "maildaemon", "mailerdaemon", "mdaemon", "bounce", "bounces")
REPORT_TYPES = ("delivery-status", "feedback-report")
REPORT_PARTS = ("message/delivery-status", "message/global-delivery-status", "message/feedback-report")

# flufl.bounce logs every detector it runs (INFO) and re-raises after logging
# a detector's exception; both are handled here, so its own log stays quiet.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


def _local(address: str) -> str:
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


def is_report(parsed: Parsed) -> bool:
    """The message itself is a delivery status or feedback report.

    Only the top level counts (RFC 3464 section 2, RFC 5965 section 2: the
    report is the message's own Content-Type).  A ``multipart/report``
    missing its report-type parameter still counts when one of its own parts
    is the machine-readable report.
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
        return any(isinstance(part, Message) and part.get_content_type() in REPORT_PARTS for part in payload[:20])
    except Exception:
        return False


def _flufl_found(parsed: Parsed) -> tuple[str, ...]:
    """The permanently failed recipients flufl.bounce finds, sorted; once per
    message (``Parsed.memo``): is_bounce asks, and then the rule reads them."""

    def scan() -> tuple[str, ...]:
        try:
            from flufl.bounce import scan_message

            return tuple(sorted(a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in scan_message(parsed.message)))
        except Exception:  # a detector tripping over odd headers: not a bounce it knows
            return ()

    return parsed.memo(("flufl",), scan)


def flufl_bounce(parsed: Parsed) -> bool:
    """flufl.bounce finds a permanently failed recipient in the message."""
    return bool(_flufl_found(parsed))


def is_bounce(parsed: Parsed, envelope: Envelope, author: str) -> bool:
    sender = (envelope.sender or "").strip()
    if sender in ("", "<>"):
        return True
    if _local(sender.strip("<>")) in BOUNCE_LOCALS or (author and _local(author) in BOUNCE_LOCALS):
        return True
    if is_report(parsed):
        return True
    if _local(sender.strip("<>")) in BOUNCE_STYLE_LOCALS or (author and _local(author) in BOUNCE_STYLE_LOCALS):
        return flufl_bounce(parsed)
    return False


MAX_TEXT = 64 * 1024  # bytes of a returned-headers or delivery-status part that are read


def head_text(part: Message, limit: int = MAX_TEXT) -> str:
    """The first ``limit`` bytes of a text part, decoded (``parts.text`` cut
    before decoding, so the decoder never sees more than ``limit`` bytes).
    A longer part is cut at its last line end within the limit, so no
    header line and no multi-byte character is cut in two."""
    data = parts.payload_bytes(part)
    if len(data) > limit:
        data = data[:limit]
        end = data.rfind(b"\n")
        if end > 0:
            data = data[: end + 1]
    return hdr.lenient_decode(data, parts.declared_charset(part, data) or None)


def _returned_headers(msg: Message) -> dict[str, str] | None:
    """The header fields (first of each name, lower-cased) of the message a
    bounce returns (RFC 3464 section 2: message/rfc822 or text/rfc822-headers);
    None when it returns none."""
    for part, _alt in parts.leaves(msg):
        ct = parts.content_type(part)
        if ct in ("message/rfc822", "message/global"):
            inner = parts.children(part)
            if not inner:
                continue
            try:
                items = list(inner[0].raw_items())
            except Exception:
                continue
        elif ct == "text/rfc822-headers":
            try:
                items = list(HeaderParser(policy=policy.default).parsestr(head_text(part)).raw_items())
            except Exception:
                continue
        else:
            continue
        values: dict[str, str] = {}
        for k, v in items:
            values.setdefault(str(k).lower(), str(v))
        return values
    return None


def returned_message(msg: Message) -> tuple[str, tuple[str, ...]]:
    """Subject and Message-IDs of the message a bounce returns (RFC 3464 section 2:
    message/rfc822 or text/rfc822-headers), so a bounce of our own mail finds its ticket."""
    return _subject_and_ids(_returned_headers(msg))


def _subject_and_ids(values: dict[str, str] | None) -> tuple[str, tuple[str, ...]]:
    if values is None:
        return "", ()
    ids = hdr.message_ids(values.get("message-id"), limit=1)
    # Same order of preference as read_headers: the message, what it answered, References newest first.
    ids += hdr.message_ids(values.get("in-reply-to"), limit=5) + hdr.message_ids(values.get("references"), limit=20)[::-1]
    return hdr.decode_header(values.get("subject", "")), tuple(ids)


# A non-standard bounce (qmail, Exim, ...) quotes the returned message in its text.
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,990}>)", re.IGNORECASE | re.MULTILINE)


def returned_message_id(msg: Message) -> str:
    """The Message-ID of the message a bounce returns: from its returned
    headers, else (a non-standard bounce without them) a ``Message-ID:``
    line in the first ``MAX_TEXT`` bytes of its text/plain parts."""
    return _returned_id(msg, _returned_headers(msg))


def _returned_id(msg: Message, values: dict[str, str] | None) -> str:
    if values is not None:
        ids = hdr.message_ids(values.get("message-id"), limit=1)
        return ids[0] if ids else ""
    for i, (part, _alt) in enumerate(parts.leaves(msg)):
        if i >= 10:
            break
        if parts.content_type(part) != "text/plain":
            continue
        m = _QUOTED_MESSAGE_ID.search(head_text(part))
        if m:
            ids = hdr.message_ids(m.group(1), limit=1)
            return ids[0] if ids else ""
    return ""


def about_our_mail(d: Draft) -> bool:
    """The bounce is proven to be about our own mail on ``d.ticket``: the
    returned message's Message-ID, or one the report itself names in
    In-Reply-To/References (Exchange does), is one of our HMAC-signed
    Message-IDs (``postdesk.msgid``) whose ticket is, or was merged into,
    ``d.ticket``.  A subject tag or a Message-ID anyone could write is no proof."""
    if d.ticket is None:
        return False
    try:
        secret = d.known.secret()
    except Exception:
        return False
    returned = read(d.parsed).returned_id
    candidates = ([returned] if returned else []) + list(d.headers.references)
    return any(threadmod.resolve(d.known, n) == d.ticket for n in threadmod.hmac_tickets(candidates, secret))


MAX_FIELD = 300  # characters of a Status or Diagnostic-Code kept for the alert
MAX_FAILED = 10  # recipients of one report named in the alert
# Field blocks of a report read at most: the message's own and 50 recipients'.
# Each costs a header parse; a forged report of thousands of tiny blocks in
# many parts took seconds.
MAX_BLOCKS = 51


def _field(block: Message, name: str) -> str:
    """A DSN field, decoded and cleaned (no CR/LF or controls), shortened."""
    try:
        value = block.get(name)
    except Exception:
        return ""
    return hdr.clean_header(str(value or ""))[:MAX_FIELD]


def _blocks(part: Message) -> list[Message]:
    """The first ``MAX_BLOCKS`` field blocks of a message/delivery-status
    part (RFC 3464 section 2.1): the email package parses each into a
    Message, or leaves text (message/global-delivery-status) that is parsed
    here block by block."""
    payload = part.get_payload()
    if isinstance(payload, list):
        if parts.content_type(part) == "message/delivery-status" or len(payload) != 1:
            return [b for b in payload[:MAX_BLOCKS] if isinstance(b, Message)]
        # message/global-delivery-status (RFC 6533): the email package reads
        # it as one embedded message, whose header is the report's first
        # block and whose body holds the per-recipient blocks.
        first = payload[0]
        return [first, *_text_blocks(head_text(first), MAX_BLOCKS - 1)] if isinstance(first, Message) else []
    return _text_blocks(head_text(part), MAX_BLOCKS)


def _text_blocks(text: str, limit: int) -> list[Message]:
    """The first ``limit`` field blocks (separated by empty lines), each parsed as a header."""
    parser = HeaderParser(policy=policy.default)
    chunks = (chunk for chunk in text.replace("\r\n", "\n").split("\n\n") if chunk.strip())
    return [parser.parsestr(chunk) for chunk in itertools.islice(chunks, limit)]


def failed_recipients(msg: Message) -> tuple[tuple[str, str, str], ...]:
    """(Final-Recipient address, Status, Diagnostic-Code) of each recipient
    the report says failed permanently; delayed, relayed and delivered ones
    (Action: delayed ...; a 4.x.x Status) are not failures.  Only the first
    delivery-status part is read: a report has one (RFC 3464 section 2)."""
    out: list[tuple[str, str, str]] = []
    for part, _alt in parts.leaves(msg):
        if parts.content_type(part) not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        try:
            blocks = _blocks(part)
        except Exception:
            blocks = []
        for block in blocks[1:]:  # the first block is about the message, the rest per recipient
            action, status = _field(block, "action").lower(), _field(block, "status")
            if action != "failed" and not status.startswith("5"):
                continue
            recipient = _field(block, "final-recipient") or _field(block, "original-recipient")
            address = hdr.clean_address(recipient.partition(";")[2] if ";" in recipient else recipient)
            out.append((address, status, _field(block, "diagnostic-code")))
            if len(out) == MAX_FAILED:
                break
        break
    return tuple(out)


def _flufl_failed(parsed: Parsed) -> tuple[tuple[str, str, str], ...]:
    return tuple((hdr.clean_address(a), "", "a non-standard delivery report") for a in _flufl_found(parsed)[:MAX_FAILED])


@dataclass(frozen=True)
class Report:
    """What a bounce says, from the message alone."""

    subject: str  # the returned message's Subject
    ids: tuple[str, ...]  # its Message-ID, In-Reply-To and References, for threading
    returned_id: str  # its Message-ID, for about_our_mail
    failed: tuple[tuple[str, str, str], ...]  # (address, Status, Diagnostic-Code) per failed recipient


def read(parsed: Parsed) -> Report:
    """The bounce's report, read once (``Parsed.memo``): by ``read_ahead``
    on the session's thread for a message that is a bounce, so none of its
    parsing and decoding runs in the store's write transaction."""

    def compute() -> Report:
        msg = parsed.message
        values = _returned_headers(msg)
        subject, ids = _subject_and_ids(values)
        failed = failed_recipients(msg) or (_flufl_failed(parsed) if not is_report(parsed) else ())
        return Report(subject, ids, _returned_id(msg, values), failed)

    return parsed.memo(("bounce",), compute)


def apply(d: Draft) -> Decision | None:
    if not is_bounce(d.parsed, d.envelope, d.author):
        return None
    d.flags.add("bounce")
    report = read(d.parsed)
    if d.ticket is None:
        th = threadmod.thread(report.subject, report.ids, d.known, d.config.organization.tag)
        if th.ticket is not None:
            d.ticket, d.ours = th.ticket, d.ours | th.ours
    if d.ticket is None:
        return d.stop(Kind.IGNORE, "bounce without ticket", flags=d.flags)
    d.public, d.send_ack, d.notify_team = False, False, False
    info = d.known.ticket(d.ticket)
    on_ticket = info.participants if info is not None else frozenset()
    failed = tuple(f for f in report.failed if f[0] and f[0] in on_ticket)
    # Failed recipients lead to an alert quoting the report: only for a
    # report about our own mail (a forged one is a private action, no alert).
    d.bounce = failed if failed and about_our_mail(d) else ()
    return None
