"""decide(): the filter's steps composed in the order of docs/filter.md.

Pure: the parsed message, the envelope, a read-only view of the store
(``Known``) and the configuration in; a ``Decision`` out.  No I/O, no
clock reads (``now`` is passed in for rules that will need it).  The order
is that of docs/filter.md:

 1 loop -> IGNORE            2 no system-address recipient -> direct staff
 3 duplicate -> DUPLICATE      follow-up or IGNORE
 4 thread (tag, references, HMAC Message-ID)
 5 bounces                   6 auto-submitted / list / bulk mail
 7 trust                     8 [pvt] / [closed]
 9 strangers                10 team notification

Each step lives in its own module and is tested alone; this module only
wires their answers together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.parser import HeaderParser
from email import policy

from postdesk.auth.result import UNCHECKED, AuthResult
from postdesk.config import Config
from postdesk.filter import attachments as attmod
from postdesk.filter import body as bodymod
from postdesk.filter import headers as hdr
from postdesk.filter import loops, parts, tags, thread as threadmod, trust as trustmod
from postdesk.filter.decision import Decision, Envelope, Kind, Known
from postdesk.filter.parse import Parsed

MAX_KEY = 990  # message_ids.key is VARCHAR(998); a longer "Message-ID" is no identity


@dataclass(frozen=True)
class Headers:
    """What the pipeline reads from the header, decoded once."""

    message_id: str
    message_key: str
    references: tuple[str, ...]
    author: str
    author_name: str
    original_subject: str
    to_cc: tuple[str, ...]


def read_headers(parsed: Parsed, envelope: Envelope) -> Headers:
    ids = hdr.message_ids(parsed.raw_header("message-id"), limit=1)
    message_id = ids[0] if ids and len(ids[0]) <= MAX_KEY else ""
    refs: list[str] = []
    # The order is the order of preference (docs/filter.md rule 4): the store's
    # ticket_for_message_ids answers with the first id it knows.  In-Reply-To
    # first, it names the message answered (RFC 5322 3.6.4); then References
    # newest first (RFC 5322 appends the parent's id last), so when the ids
    # name messages of different tickets the one being answered wins.
    in_reply_to = hdr.message_ids(parsed.raw_header("in-reply-to"), limit=20)
    references = hdr.message_ids(parsed.raw_header("references"))
    for i in in_reply_to + references[::-1]:
        if i not in refs and len(i) <= MAX_KEY:
            refs.append(i)
    author, name = "", ""
    for header in ("from", "sender"):
        found = hdr.addresses(parsed.raw_headers(header))
        if found:
            name, author = found[0]
            break
    if not author:
        author = hdr.clean_address(envelope.sender or "")
    to_cc = tuple(a for _n, a in hdr.addresses(parsed.raw_headers("to") + parsed.raw_headers("cc")))
    return Headers(
        message_id=message_id,
        message_key=message_id or f"sha256:{parsed.sha256}",
        references=tuple(refs),
        author=author,
        author_name=name,
        original_subject=parsed.header("subject"),
        to_cc=to_cc,
    )


def _not_ours(addresses, config: Config) -> tuple[str, ...]:
    out: list[str] = []
    for a in addresses:
        a = hdr.clean_address(a)
        if a and not config.is_own_address(a) and a not in out:
            out.append(a)
    return tuple(out)


def _returned_message(msg: Message) -> tuple[str, tuple[str, ...]]:
    """Subject and Message-IDs of the message a bounce returns (RFC 3464 section 2:
    message/rfc822 or text/rfc822-headers), so a bounce of our own mail finds its ticket."""
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
                items = list(HeaderParser(policy=policy.default).parsestr(parts.text(part)[:65536]).raw_items())
            except Exception:
                continue
        else:
            continue
        values: dict[str, str] = {}
        for k, v in items:
            values.setdefault(str(k).lower(), str(v))
        ids = hdr.message_ids(values.get("message-id"), limit=1)
        # Same order of preference as read_headers: the message, what it answered, References newest first.
        ids += hdr.message_ids(values.get("in-reply-to"), limit=5) + hdr.message_ids(values.get("references"), limit=20)[::-1]
        return hdr.decode_header(values.get("subject", "")), tuple(ids)
    return "", ()


def decide(
    parsed: Parsed,
    envelope: Envelope,
    known: Known,
    config: Config,
    now: datetime | None = None,
    auth: AuthResult = UNCHECKED,
) -> Decision:
    """The Decision for one message (docs/filter.md, rules 1-10).  Pure: reads only ``known``."""
    h = read_headers(parsed, envelope)
    tag = config.organization.tag
    base = dict(
        message_key=h.message_key,
        message_id=h.message_id,
        references=h.references,
        author=h.author,
        author_name=h.author_name,
        original_subject=h.original_subject,
        subject=threadmod.strip_subject(h.original_subject, tag),
        auth=auth,
    )

    # Rule 1: our own mail coming back.
    if loops.is_loop(parsed, envelope, h.author, config):
        return Decision(kind=Kind.IGNORE, flags=frozenset({"loop"}), reason="loop: our own mail", **base)

    tr = trustmod.trust(h.author, envelope, config)
    flags: set[str] = set()

    # Rule 2: not addressed to a system address.  Only a trusted staff member,
    # logged in with SASL, mailing a customer directly about a tagged ticket
    # is recorded (so the customer's reply, and the history, stay complete).
    cc = _not_ours(h.to_cc, config)
    if not any(config.is_system_address(hdr.clean_address(r)) for r in envelope.recipients):
        number = threadmod.find_tag(h.original_subject, tag)
        if not (tr.staff and tr.sasl and number is not None and known.ticket(number) is not None):
            return Decision(kind=Kind.IGNORE, reason="no system address", **base)
        flags.add("direct")
        cc = _not_ours(list(envelope.recipients) + list(h.to_cc), config)

    # Rule 3: seen before (same Message-ID, or same bytes).
    if known.message_seen(h.message_key):
        ticket = known.ticket_for_message_ids([h.message_id]) if h.message_id else None
        return Decision(kind=Kind.DUPLICATE, ticket=ticket, reason="duplicate", **base)

    # Rule 4: the ticket.
    th = threadmod.thread(h.original_subject, h.references, known, tag)
    if th.unknown_tag:
        flags.add("unknown-tag")

    # Rule 5: bounces.  A DSN carries the returned message; its Message-ID is
    # often ours (an acknowledgement that bounced), which names the ticket.
    auto = loops.automation(parsed, envelope, h.author, config)
    ours = th.ours
    if auto.bounce:
        flags.add("bounce")
        if th.ticket is None:
            subject, ids = _returned_message(parsed.message)
            th2 = threadmod.thread(subject, ids, known, tag)
            if th2.ticket is not None:
                th, ours = th2, ours | th2.ours
        if th.ticket is None:
            return Decision(kind=Kind.IGNORE, flags=frozenset(flags), reason="bounce without ticket", **base)

    kind = Kind.FOLLOWUP if th.ticket is not None else Kind.NEW
    public, send_ack, notify_team, close = True, True, True, False

    if auto.bounce:
        public, send_ack, notify_team = False, False, False

    # Rule 6: automatic, list and bulk mail: never acknowledged (RFC 3834).
    # Only mail a machine wrote (auto) is also kept private and silent on a
    # ticket; list and bulk headers just ask not to be auto-answered, and a
    # person's reply carrying them is a reply like any other.
    flags |= {name for name in ("auto", "list", "bulk") if getattr(auto, name)}
    if auto.no_ack:
        send_ack = False
    if auto.auto and kind is Kind.FOLLOWUP:
        public, notify_team = False, False

    # Body and attachments (only for mail that is recorded).
    body = bodymod.extract(parsed.message)
    found = attmod.collect(parsed.message, config.limits.max_attachments)
    # More attachments than we keep, or a multipart cut off before its closing
    # boundary (RFC 2046 5.1.1): either way something is missing; staff should know.
    if found.truncated or "CloseBoundaryNotFoundDefect" in parsed.defects:
        flags.add("truncated")

    # Rule 7: trust.
    if tr.staff:
        flags.add("staff")
    elif tr.untrusted:
        flags.add("untrusted")
        public = False

    # Rule 8: commands, from trusted staff only.
    if tr.staff:
        cmd = tags.find_commands(h.original_subject, body.new_text)
        if cmd.pvt:
            public = False
            flags.add("pvt")
        if cmd.closed:
            close = True
            flags.add("closed")

    # Rule 9: a stranger joining a ticket stays private until staff decide.
    # (Not for bounces: a mail system is no one joining; they are private anyway.)
    if kind is Kind.FOLLOWUP and not tr.staff and not auto.bounce:
        info = known.ticket(th.ticket)
        participants = info.participants if info else frozenset()
        if h.author not in participants and th.ticket not in ours:
            public = False
            flags.add("stranger")

    # Rule 10: the team hears of new tickets and of customers' replies.
    if kind is Kind.FOLLOWUP and tr.staff:
        notify_team = False

    return Decision(
        kind=kind,
        ticket=th.ticket,
        text=body.text,
        new_text=body.new_text,
        attachments=found.attachments,
        public=public,
        close=close,
        staff=tr.staff,
        send_ack=send_ack,
        notify_team=notify_team,
        cc=cc,
        flags=frozenset(flags),
        **base,
    )
