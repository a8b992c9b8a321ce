"""Build the mails the notifier sends: acknowledgement, team alert, customer update.

Input is a ``Job`` (plain data loaded by ``postdesk.store.outbox``); output is
a ``Mail``: envelope plus the exact bytes to submit.

Headers are the dangerous part.  Every value that comes from a message we
received (subject, display names, file names, Message-IDs) was decoded from
RFC 2047 on the way in, so it may hold CR/LF that would become new header
lines ("Bcc:" injection), or text that *looks* like an encoded-word and that
``email.policy.default`` would decode a second time on output (seen with Python 3.11).
So we (1) clean every value (``postdesk.filter.clean_header``: no CR, LF, NUL
or other controls), and (2) write the header block ourselves (``fold``), so
nothing re-parses the values: a value that is not plain ASCII, or that
contains "=?", is encoded as a whole as UTF-8 encoded-words (RFC 2047
section 2), so a receiving client decodes it back to the literal text and
nothing more.  File names go as RFC 2231 parameters, never decoded twice,
split into numbered continuations (RFC 2231 section 3) so no header line
exceeds the 998 octets RFC 5322 section 2.1.1 allows (a strict relay
answers 500 to a longer one).  Names, subjects and file names that people
read have their bidirectional controls neutralised (``clean``): a
right-to-left override makes "invoice<RLO>fdp.exe" display as
"invoiceexe.pdf" (Unicode TR #36, section 2.5).
Writing the headers and the text entity directly is also four times faster
than the email package's folding; multipart bodies still use the package.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import encoders
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from postdesk.config import Config
from postdesk.filter import clean_header
from postdesk.mail import LOOP_HEADER, REPLY_MARKER, TICKET_HEADER
from postdesk.msgid import make_message_id
from postdesk.notifier.templates import Rendered, Templates
from postdesk.notifier.templates import for_config as templates_for
from postdesk.outbox_rows import Entry, Job, Person
from postdesk.sanitise import cid_references, sanitise_html

# The filter cuts a reply at this line, so customers' quoted history of our
# own mail never becomes part of the ticket.

MAX_SUBJECT = 250  # characters; RFC 5322 2.1.1 wants lines under 998, folding handles the rest
MAX_NAME = 200  # characters of a display name (the store keeps no more)
MAX_MSGID = 900  # a longer Message-ID cannot go on one header line (998 octets)
MAX_LINE = 998  # octets per line without CRLF (RFC 5322 section 2.1.1)
PARAM_CHUNK = 60  # characters per RFC 2231 continuation, before "filename*N*="
# Controls, line separators, and the bidirectional formatting characters
# (LRE RLE PDF LRO RLO U+202A-E, LRI RLI FSI PDI U+2066-9, LRM RLM ALM):
# text from mail must not reorder what people see around it.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u0085\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ADDR = re.compile(r"^[^\s<>()\[\]\\,;:\"@]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_MSGID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+$")  # no <, >, space
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9 ._+,()-]+$")
_MIMETYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


class ComposeError(ValueError):
    """The row cannot become a mail (e.g. an unusable recipient address): permanent."""


@dataclass(frozen=True)
class Mail:
    sender: str  # envelope MAIL FROM
    recipient: str  # envelope RCPT TO
    message_id: str  # without <>
    data: bytes  # the message, CRLF line ends


# --- header values -----------------------------------------------------------


def clean(value: str) -> str:
    """A header-safe single line: the filter's cleaning, then our own check.

    The second pass is belt and braces: whatever clean_header does, no CR/LF or
    other control character from data can reach a header we write.
    """
    return " ".join(_CONTROLS.sub(" ", clean_header(value or "")).split())


def _needs_encoding(value: str) -> bool:
    return not value.isascii() or "=?" in value


def unstructured(value: str, name: str) -> str:
    """An unstructured header value (Subject): ASCII as is, else UTF-8
    encoded-words (at most 75 characters each, RFC 2047 section 2)."""
    value = clean(value)
    if _needs_encoding(value):
        return " ".join(Header(value, "utf-8", header_name=name).encode(maxlinelen=76).split())
    return value


def address(addr: str) -> str:
    """A validated addr-spec, or ComposeError."""
    addr = (addr or "").strip()
    if not _ADDR.fullmatch(addr):
        raise ComposeError(f"unusable address {addr!r}")
    return addr


def mailbox(name: str, addr: str) -> str:
    """``Display Name <addr>`` with the name encoded or quoted (RFC 5322 3.4)."""
    addr = address(addr)
    name = clean(clean(name)[:MAX_NAME])
    if not name:
        return addr
    if _needs_encoding(name):
        # An encoded-word is a whole "word" in a phrase (RFC 2047 section 5 (3)).
        shown = _phrase_words(name)
    elif re.search(r'[][\\()<>@,:;".]', name):
        shown = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        shown = name
    return f"{shown} <{addr}>"


def _encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def _phrase_words(name: str) -> str:
    """A display name as UTF-8 encoded-words of at most 75 characters
    (RFC 2047 section 2), split between words with the space inside the
    earlier word: whitespace between encoded-words is dropped when decoding
    (6.2), and some parsers (Python's address parser) read a word split in
    the middle as two words."""
    chunks: list[str] = []
    current = ""
    for glue, piece in _pieces(name):
        candidate = f"{current}{glue}{piece}" if current else piece
        if current and len(_encoded_word(candidate)) > 75:
            chunks.append(current + glue)
            current = piece
        else:
            current = candidate
    chunks.append(current)
    return " ".join(_encoded_word(c) for c in chunks)


def _pieces(name: str):
    """(glue, piece): the words of ``name`` with the space before each; a
    word too long for one encoded-word is split with no glue (adjacent
    encoded-words decode as one text, RFC 2047 section 6.2)."""
    for i, word in enumerate(name.split(" ")):
        glue = " " if i else ""
        while len(_encoded_word(word)) > 70:
            cut = 1
            while len(_encoded_word(word[: cut + 1])) <= 70:
                cut += 1
            yield glue, word[:cut]
            glue, word = "", word[cut:]
        yield glue, word


def msgid(value: str) -> str:
    """``<id>`` for a usable Message-ID, "" otherwise."""
    value = clean(value).strip("<>")
    return f"<{value}>" if len(value) <= MAX_MSGID and _MSGID.fullmatch(value) else ""


def filename_param(filename: str) -> str:
    """``attachment; filename=...`` for Content-Disposition, folded.

    A short name of letters, digits and ``space . _ - + , ( )`` goes as a
    quoted string.  Anything else (not ASCII, quotes or backslashes, which
    clients unquote differently, "=?", or long) goes as RFC 2231 extended parameter
    continuations, ``filename*0*=utf-8''...; filename*1*=...``: each on
    its own folded line, so no line exceeds 998 octets whatever the name.
    Clients decode percent-encoding once; they RFC 2047-decode a quoted
    "=?" name (against RFC 2047 section 5), which percent-encoding avoids.
    """
    name = clean(filename) or "attachment"  # any length: continuations fold it
    if len(name) <= PARAM_CHUNK and _PLAIN_NAME.fullmatch(name):
        return f'attachment; filename="{name}"'
    encoded = _percent(name)
    chunks: list[str] = []
    while encoded:
        cut = min(PARAM_CHUNK, len(encoded))
        # Never split a %XX triplet.
        if "%" in encoded[max(0, cut - 2) : cut]:
            cut = encoded.rindex("%", 0, cut)
        chunks.append(encoded[:cut])
        encoded = encoded[cut:]
    params = [f"filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{c}" for i, c in enumerate(chunks)]
    return "attachment;\n " + ";\n ".join(params)


def _percent(value: str) -> str:
    """RFC 2231 section 7 / RFC 5987 attr-char: letters, digits and
    ``!#$&+-.^_`|~`` as they are, every other octet of UTF-8 as %XX."""
    return quote(value.encode("utf-8"), safe="!#$&+-.^_`|~")



# --- bodies ------------------------------------------------------------------
# The words are in template files (postdesk.notifier.templates); here is
# what the templates are given: cleaned values, never markup from mail
# except each action's sanitised HTML (``e.html``, marked safe).

_STATUS = re.compile(r"^Status changed from (\w+) to (\w+)$")


def _tag(config: Config, job: Job) -> str:
    return f"[{config.organization.tag}{job.ticket}]"


def _who(person: Person | None, signature: str) -> str:
    if person is None:
        return signature
    if person.staff:
        # Customers see staff by name, not by address: replies go to the desk.
        return clean(person.name) or signature
    return clean(person.label())


def _entry(entry: Entry, signature: str, html: bool) -> dict[str, Any]:
    status = _STATUS.match(entry.text.strip()) if entry.kind == "status" else None
    return {
        "id": entry.id,
        "kind": entry.kind,
        "public": entry.public,
        "who": _who(entry.author, signature),
        "who_full": clean(entry.author.label()) if entry.author else "",
        "when": entry.created_at,
        "text": entry.text.strip() if entry.kind == "status" else entry.text.rstrip(),
        "html": Markup(sanitise_html(entry.html)) if html and entry.html else Markup(""),
        "flags": sorted(entry.flags),
        "old_status": status.group(1) if status else "",
        "new_status": status.group(2) if status else "",
        "attachments": [
            {"filename": clean(a.filename), "content_type": clean(a.content_type), "size": a.size, "inline": a.inline} for a in entry.attachments
        ],
    }


REFUSED_LINES = 20  # commands listed in a refusal; the note on the ticket keeps them all


def _duration(seconds: float) -> dict[str, Any]:
    """``{"n", "unit"}`` (unit day, hour, minute or second), rounded, for the templates to word."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return {"n": round(seconds / size), "unit": unit}
    return {"n": max(1, round(seconds)), "unit": "second"}


def _close_in(config: Config) -> dict[str, Any] | None:
    """How long after the reminder a pending ticket closes (None: it does not)."""
    close, remind = float(config.lifecycle.pending_close), float(config.lifecycle.pending_reminder)
    return _duration(close - remind) if close and close > remind else None


def context(job: Job, config: Config, html: bool = False) -> dict[str, Any]:
    """What every template of ``job.kind`` is given (docs/templates.md)."""
    department = config.department(job.department)
    signature = clean(department.display_name) or clean(config.organization.name)
    refused = [clean(line.strip())[:300] for e in job.entries for line in e.text.splitlines()[1 : REFUSED_LINES + 1]] if job.kind == "refusal" else []
    return {
        "kind": job.kind,
        "org_name": signature,  # the ticket's department's name
        "department": department.name,
        "tag": _tag(config, job),
        "ticket": job.ticket,
        "subject": clean(job.subject)[:MAX_SUBJECT],
        "status": job.status,
        "recipient_name": clean(job.recipient.name),
        "recipient_address": job.recipient.address,
        "new_ticket": job.new_ticket,
        "language": job.language,
        "reply_marker": REPLY_MARKER,
        "entries": [_entry(e, signature, html) for e in job.entries],
        "refused": refused,  # refusal: the commands not done, one line each with why
        "close_in": _close_in(config) if job.kind == "reminder" else None,  # reminder: {"n", "unit"} or None
    }


def render(job: Job, config: Config, html: bool = False, templates: Templates | None = None) -> Rendered:
    """Subject, text (our reply marker first) and HTML of ``job``'s mail."""
    templates = templates or templates_for(config)
    department = config.department(job.department)
    out = templates.render(job.kind, context(job, config, html), department, job.language, html)
    # The marker is not left to the templates: the filter cuts replies at it.
    text = f"{REPLY_MARKER}\n\n{out.text.lstrip(chr(10))}"
    return Rendered(subject=out.subject, text=text, html=out.html)


def ack_text(job: Job, config: Config) -> str:
    return render(job, config).text


def alert_text(job: Job, config: Config) -> str:
    return render(job, config).text


def update_text(job: Job, config: Config) -> str:
    return render(job, config).text


# --- the message ---------------------------------------------------------------


def fold(name: str, value: str) -> bytes:
    """One header field, folded at spaces to lines of at most 78 characters
    (RFC 5322 2.2.3: CRLF before existing whitespace; unfolding restores it).

    ``value`` is already safe ASCII (cleaned, encoded-words where needed); we
    write it ourselves so nothing re-parses it (see the module docstring).
    """
    line = f"{name}: {value}"
    if "\r" in line or "\n" in line or not line.isascii():
        raise ComposeError(f"header {name} is not clean ASCII")  # a bug, never data
    if len(line) <= 78:
        return line.encode("ascii") + b"\r\n"
    if max(len(w) for w in line.split(" ")) > MAX_LINE - 1:
        raise ComposeError(f"header {name} has a word longer than {MAX_LINE} octets")  # a bug, never data
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > 78 and current.strip():
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\r\n".join(out).encode("ascii") + b"\r\n"


def _text_entity(text: str) -> bytes:
    """A text/plain UTF-8 MIME entity, quoted-printable (readable in logs and
    queues, 7bit-safe for any relay; RFC 2045 6.7)."""
    body = binascii.b2a_qp(text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8"), istext=True)
    return (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body.replace(b"\n", b"\r\n")
    )


def _text_part(text: str) -> MIMEText:
    cs = Charset("utf-8")
    cs.body_encoding = QP
    return MIMEText(text, "plain", cs)  # type: ignore[arg-type]  # a Charset works (it picks QP); the stubs allow only str


def _attachment_part(info, data: bytes) -> MIMEBase:
    ctype = info.content_type.lower().strip()
    if not _MIMETYPE.fullmatch(ctype) or ctype.startswith(("multipart/", "message/")):
        # message/* and multipart/* must not be base64-encoded (RFC 2046 5.2.1,
        # 5.1); shipping them as opaque bytes keeps them byte-identical.
        ctype = "application/octet-stream"
    maintype, subtype = ctype.split("/", 1)
    part = MIMEBase(maintype, subtype)
    part.set_payload(data)
    encoders.encode_base64(part)
    # Folded by us (compat32 writes a folded value as it is): see filename_param.
    part["Content-Disposition"] = filename_param(info.filename)
    return part


def _mixed_entity(text: str, parts: list[MIMEBase]) -> bytes:
    """multipart/mixed: the text, then the attachments (email package; compat32
    writes what it is given, and no value here comes from a header we read
    except file names, which go as RFC 2231 parameters)."""
    msg = MIMEMultipart("mixed")
    for p in [_text_part(text), *parts]:
        del p["MIME-Version"]  # RFC 2045 4: on the message, not on each part
        msg.attach(p)
    del msg["MIME-Version"]
    return msg.as_bytes(policy=_SMTP_COMPAT)


def _html_part(html: str) -> MIMEText:
    cs = Charset("utf-8")
    cs.body_encoding = QP  # soft line breaks: no line over 76 octets, whatever the HTML
    return MIMEText(html, "html", cs)  # type: ignore[arg-type]  # as _text_part


def _inline_part(info, data: bytes, cid: str) -> MIMEBase:
    part = _attachment_part(info, data)
    part["Content-ID"] = f"<{cid}>"
    part.replace_header("Content-Disposition", "inline" + filename_param(info.filename).removeprefix("attachment"))
    return part


def _bare(part: Message) -> Message:
    del part["MIME-Version"]  # RFC 2045 4: on the message, not on each part
    return part


def _entity(job: Job, rendered: Rendered, read_attachment: Callable[[str], bytes] | None) -> bytes:
    """The body entity of ``job``'s mail.

    Text only: text/plain.  With attachments (updates): multipart/mixed,
    the text first.  With HTML::

        multipart/mixed                      (when other attachments go too)
          multipart/alternative              (RFC 2046 5.1.4: the plainest first)
            text/plain
            multipart/related                (RFC 2387; only with inline images)
              text/html
              image/...  Content-ID: <cid>   (the same bytes and cid as received)
          attachments...

    An inline image goes in the related part when the HTML shows it by its
    cid (``sanitise.cid_references``); otherwise, and in text-only mail, it
    is an attachment like any other.  A team alert carries only the
    inline images its HTML shows (its attachments are listed, as before).
    """
    read = read_attachment
    html = rendered.html
    shown = set(cid_references(html)) if html else set()
    inline: list[Message] = []
    attached: list[Message] = []
    seen: set[str] = set()
    for entry in job.entries:
        for info in entry.attachments:
            cid = info.content_id.strip().strip("<>")
            if html and info.inline and cid in shown and read is not None and msgid(cid):
                if cid not in seen:  # one part per cid: the HTML can show it twice
                    seen.add(cid)
                    inline.append(_inline_part(info, read(info.sha256), cid))
            elif job.kind == "update" and read is not None:
                attached.append(_attachment_part(info, read(info.sha256)))
    if html is None:
        if not attached:
            return _text_entity(rendered.text)
        return _mixed_entity(rendered.text, attached)  # type: ignore[arg-type]
    html_entity: Message = _html_part(html)
    if inline:
        related = MIMEMultipart("related", type="text/html")
        for p in [html_entity, *inline]:
            related.attach(_bare(p))
        html_entity = related
    alternative = MIMEMultipart("alternative")
    for p in [_text_part(rendered.text), html_entity]:
        alternative.attach(_bare(p))
    top = alternative
    if attached:
        top = MIMEMultipart("mixed")
        for p in [alternative, *attached]:
            top.attach(_bare(p))
    del top["MIME-Version"]
    return top.as_bytes(policy=_SMTP_COMPAT)


def compose(
    job: Job,
    config: Config,
    secret: bytes,
    now: datetime,
    read_attachment: Callable[[str], bytes] | None = None,
) -> Mail:
    """The mail for ``job``.  ``read_attachment(sha256) -> bytes`` for updates."""
    org = config.organization
    reply_to = org.reply_to
    domain = reply_to.rpartition("@")[2]
    recipient = address(job.recipient.address)

    # RFC 3834 section 5: a reply to one message is auto-replied, the rest auto-generated.
    autos = {
        "ack": "auto-replied",
        "alert": "auto-generated",
        "update": "auto-generated",
        "reminder": "auto-generated",
        "refusal": "auto-replied",
        "bounce-alert": "auto-generated",
    }
    if job.kind not in autos:
        raise ComposeError(f"unknown outbox kind {job.kind!r}")
    auto = autos[job.kind]
    # HTML only when an action has some (an ack carries the customer's own
    # words back, never HTML); the text part always says everything.
    wants_html = job.kind in ("alert", "update") and any(e.html for e in job.entries)
    rendered = render(job, config, html=wants_html)
    entity = _entity(job, rendered, read_attachment)

    own = make_message_id(job.ticket, secret, domain)
    subject = clean(rendered.subject)[: MAX_SUBJECT + 40]
    if _tag(config, job) not in subject:
        # Replies find their ticket by the tag (docs/filter.md): a template cannot drop it.
        subject = f"{_tag(config, job)} {subject}".rstrip()

    # A staff reply to an alert must reach a system address to become an action.
    answer_to = reply_to if job.kind != "alert" or config.is_system_address(reply_to) else org.system_addresses[0]

    headers: list[tuple[str, str]] = [
        ("From", mailbox(org.name, reply_to)),
        ("Reply-To", mailbox(org.name, answer_to)),
        ("To", mailbox(job.recipient.name, recipient)),
        ("Subject", unstructured(subject, "Subject")),
        ("Date", format_datetime(now.replace(tzinfo=UTC))),
        ("Message-ID", f"<{own}>"),
    ]
    parent = msgid(job.in_reply_to)
    if parent:
        # RFC 5322 3.6.4: both, so clients thread under the customer's message.
        headers += [("In-Reply-To", parent), ("References", parent)]
    headers += [
        ("Auto-Submitted", auto),  # RFC 3834 section 5
        # Exchange/Outlook: no out-of-office or read receipts back to the desk.
        ("X-Auto-Response-Suppress", "All"),
        (LOOP_HEADER, reply_to),
        (TICKET_HEADER, str(job.ticket)),
    ]
    headers.append(("MIME-Version", "1.0"))
    data = b"".join(fold(name, value) for name, value in headers) + entity
    return Mail(sender=reply_to, recipient=recipient, message_id=own, data=data)


def _smtp_compat():
    from email.policy import compat32

    # compat32 writes header values as given (no re-parsing, so no second
    # RFC 2047 decoding); CRLF line ends as SMTP wants (RFC 5321 2.3.8).
    return compat32.clone(linesep="\r\n", max_line_length=78)


_SMTP_COMPAT = _smtp_compat()
