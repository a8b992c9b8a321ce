"""Build the mails the notifier sends: acknowledgement, team alert, customer
update, pending reminder, bounce alert.

Each goes out as the ticket's department (``Config.department``: its
display name and ``reply_to`` in From and Reply-To, its name under the
text); tickets of the default department as ``[organization]``.

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
than the email package's folding.  The words come from templates
(``postdesk.notifier.templates``); an alert or update about an action with
HTML is multipart/alternative (``_entity``).

Attachments are streamed, never held whole: a mail is a ``Body``, literal
pieces and base64 streams of blobs read a chunk at a time when the mail is
written to the SMTP connection, whose exact length is known before the
first byte (BDAT needs it, RFC 3030).  The multipart structure is written
here too, with a boundary that starts with ``=_``, which neither base64 nor
quoted-printable can produce (RFC 2045 section 6.7 rule 1: "=" is always
followed by two hex digits or a line break), so no part can contain it.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime
from typing import Any, Protocol
from urllib.parse import quote

from markupsafe import Markup

from postdesk.config import Config
from postdesk.filter import clean_header
from postdesk.mail import LOOP_HEADER, REPLY_MARKER, TICKET_HEADER
from postdesk.msgid import make_message_id
from postdesk.notifier.refusal import MAX_LINES as REFUSED_LINES
from postdesk.notifier.templates import Rendered, Templates
from postdesk.notifier.templates import for_config as templates_for
from postdesk.outbox_rows import AttachmentInfo, Entry, Job, Person
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


class StreamError(Exception):
    """An attachment gave other bytes than announced while the mail was written."""


class Source(Protocol):
    """An attachment's bytes as the store hands them over (``store.Blob``):
    its size, and its chunks, read (and checked) anew on each iteration."""

    @property
    def size(self) -> int: ...

    def __iter__(self) -> Iterator[bytes]: ...


B64_LINE = 57  # bytes per base64 line of 76 characters (RFC 2045 section 6.8)


def base64_length(size: int) -> int:
    """Octets of ``size`` bytes in base64 lines of 76 characters plus CRLF."""
    full, rest = divmod(size, B64_LINE)
    return full * 78 + ((rest + 2) // 3 * 4 + 2 if rest else 0)


@dataclass(frozen=True)
class Base64Stream:
    """A source written as base64 lines, a chunk at a time."""

    source: Source

    def __len__(self) -> int:
        return base64_length(self.source.size)

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        written = 0
        for chunk in self.source:
            data = pending + bytes(chunk)
            cut = len(data) - len(data) % B64_LINE
            pending = data[cut:]
            if cut:
                out = base64.encodebytes(data[:cut]).replace(b"\n", b"\r\n")
                written += len(out)
                yield out
        if pending:
            out = base64.encodebytes(pending).replace(b"\n", b"\r\n")
            written += len(out)
            yield out
        if written != len(self):
            # The announced length is wrong (the bytes changed under us):
            # the writer must not finish this mail.
            raise StreamError(f"{written} octets of base64 written, {len(self)} announced")


class Body:
    """A mail's bytes: literal pieces and ``Base64Stream``s, each ending in
    CRLF.  ``len()`` is exact before anything is read; iterating yields the
    pieces, reading the streams as it goes."""

    def __init__(self, pieces: Iterable[bytes | Base64Stream]):
        self.pieces = tuple(pieces)

    def __len__(self) -> int:
        return sum(len(p) for p in self.pieces)

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            if isinstance(piece, bytes):
                yield piece
            else:
                yield from piece

    @property
    def streamed(self) -> bool:
        return any(not isinstance(p, bytes) for p in self.pieces)

    def __bytes__(self) -> bytes:
        return b"".join(self)


@dataclass(frozen=True)
class Mail:
    sender: str  # envelope MAIL FROM
    recipient: str  # envelope RCPT TO
    message_id: str  # without <>
    body: Body  # the message, CRLF line ends

    @property
    def data(self) -> bytes:
        """The whole message in memory: for small mails and tests (``payload`` for sending)."""
        return bytes(self.body)

    @property
    def payload(self) -> bytes | Body:
        """What to submit: the bytes, or the Body when it streams attachments."""
        return self.body if self.body.streamed else bytes(self.body)


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
        # Closed by the lifecycle pass: its stored text is for staff, in the
        # desk's language; the templates word it in the mail's language.
        "auto_close": entry.kind == "status" and "auto-close" in entry.flags,
        "attachments": [
            {"filename": clean(a.filename), "content_type": clean(a.content_type), "size": a.size, "inline": a.inline} for a in entry.attachments
        ],
    }




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
        # How long a pending ticket waits before it is closed: {"n", "unit"}, or None (never).
        "pending_close": _duration(float(config.lifecycle.pending_close)) if float(config.lifecycle.pending_close) > 0 else None,
    }


def render(job: Job, config: Config, html: bool = False, templates: Templates | None = None) -> Rendered:
    """Subject, text (our reply marker first) and HTML of ``job``'s mail."""
    templates = templates or templates_for(config)
    department = config.department(job.department)
    out = templates.render(job.kind, context(job, config, html), department, job.language, html)
    # The marker is not left to the templates: the filter cuts replies at it.
    text = f"{REPLY_MARKER}\n\n{out.text.lstrip(chr(10))}"
    return Rendered(subject=out.subject, text=text, html=out.html)


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


def _text_entity(text: str, subtype: str = "plain") -> bytes:
    """A text/plain (or text/html) UTF-8 MIME entity, quoted-printable
    (readable in logs and queues, 7bit-safe for any relay, and no line over
    76 octets whatever the text; RFC 2045 6.7)."""
    body = binascii.b2a_qp(text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8"), istext=True)
    return (
        f"Content-Type: text/{subtype}; charset=utf-8\r\n".encode("ascii")
        + b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + body.replace(b"\n", b"\r\n")
    )


def _attachment_headers(info: AttachmentInfo) -> bytes:
    """The MIME header of one attachment part (ours; nothing re-parses it)."""
    ctype = info.content_type.lower().strip()
    if not _MIMETYPE.fullmatch(ctype) or ctype.startswith(("multipart/", "message/")):
        # message/* and multipart/* must not be base64-encoded (RFC 2046 5.2.1,
        # 5.1); shipping them as opaque bytes keeps them byte-identical.
        ctype = "application/octet-stream"
    disposition = filename_param(info.filename).replace("\n", "\r\n")
    return (
        f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: {disposition}\r\n\r\n"
    ).encode("ascii")


@dataclass(frozen=True)
class _Bytes:
    """A ``Source`` over bytes in memory (a caller that has them whole)."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[bytes]:
        yield self.data


Piece = bytes | Base64Stream


def _multipart(subtype: str, parts: list[list[Piece]], params: str = "") -> list[Piece]:
    """A multipart entity of ``parts`` (each its pieces, headers first), with
    a boundary no base64 or quoted-printable part can contain (see above)."""
    boundary = "=_postdesk_" + secrets.token_hex(12)
    out: list[Piece] = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"{params}\r\n\r\n'.encode("ascii")]
    for i, part in enumerate(parts):
        out.append(f"{'' if i == 0 else chr(13) + chr(10)}--{boundary}\r\n".encode("ascii"))
        out += part
        last = part[-1]
        if isinstance(last, bytes) and not last.endswith(b"\r\n"):
            out.append(b"\r\n")
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return out


def _mixed_entity(text: str, attachments: list[tuple[AttachmentInfo, Source]]) -> list[Piece]:
    """multipart/mixed: the text, then the attachments, streamed (RFC 2046 5.1.1)."""
    return _multipart("mixed", [[_text_entity(text)], *(_attachment_part(info, src) for info, src in attachments)])


def _attachment_part(info: AttachmentInfo, src: Source) -> list[Piece]:
    return [_attachment_headers(info), Base64Stream(src)]


def _inline_headers(info: AttachmentInfo, cid: str) -> bytes:
    """An inline image's part header: its Content-ID as received (RFC 2392), shown inline."""
    head = _attachment_headers(info)
    return head.replace(b"Content-Disposition: attachment", f"Content-ID: <{cid}>\r\nContent-Disposition: inline".encode("ascii"), 1)


def _entity(job: Job, rendered: Rendered, read_attachment: Callable[[str], bytes | Source] | None) -> list[Piece]:
    """The body entity of ``job``'s mail, as pieces (attachments streamed).

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
    cid (``sanitise.cid_references``), once however often it is shown;
    otherwise, and in text-only mail, it is an attachment like any other.
    A team alert carries only the inline images its HTML shows (its
    attachments are listed, as before).
    """

    def source(info: AttachmentInfo) -> Source:
        assert read_attachment is not None
        got = read_attachment(info.sha256)
        return _Bytes(got) if isinstance(got, bytes) else got

    html = rendered.html
    shown = set(cid_references(html)) if html else set()
    inline: list[list[Piece]] = []
    attached: list[tuple[AttachmentInfo, Source]] = []
    seen: set[str] = set()
    for entry in job.entries:
        for info in entry.attachments:
            cid = info.content_id.strip().strip("<>")
            if html and info.inline and cid in shown and read_attachment is not None and msgid(cid):
                if cid not in seen:
                    seen.add(cid)
                    inline.append([_inline_headers(info, cid), Base64Stream(source(info))])
            elif job.kind == "update" and read_attachment is not None:
                attached.append((info, source(info)))
    if html is None:
        return _mixed_entity(rendered.text, attached) if attached else [_text_entity(rendered.text)]
    html_part: list[Piece] = [_text_entity(html, "html")]
    if inline:
        html_part = _multipart("related", [html_part, *inline], '; type="text/html"')
    alternative = _multipart("alternative", [[_text_entity(rendered.text)], html_part])
    if not attached:
        return alternative
    return _multipart("mixed", [alternative, *(_attachment_part(info, src) for info, src in attached)])


def compose(
    job: Job,
    config: Config,
    secret: bytes,
    now: datetime,
    read_attachment: Callable[[str], bytes | Source] | None = None,
) -> Mail:
    """The mail for ``job``.  ``read_attachment(sha256)`` gives an update's
    attachments: a ``Source`` (streamed when the mail is written) or bytes."""
    org = config.organization
    department = config.department(job.department)
    reply_to = department.reply_to
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
    pieces = _entity(job, rendered, read_attachment)

    own = make_message_id(job.ticket, secret, domain)
    subject = clean(rendered.subject)[: MAX_SUBJECT + 40]
    if _tag(config, job) not in subject:
        # Replies find their ticket by the tag (docs/filter.md): a template cannot drop it.
        subject = f"{_tag(config, job)} {subject}".rstrip()

    # A staff reply to an alert must reach a system address to become an
    # action: the department's first address when its reply_to is not one.
    staff_mail = job.kind in ("alert", "bounce-alert", "refusal")
    answer_to = reply_to if not staff_mail or config.is_system_address(reply_to) else department.addresses[0]
    name = department.display_name or org.name

    headers: list[tuple[str, str]] = [
        ("From", mailbox(name, reply_to)),
        ("Reply-To", mailbox(name, answer_to)),
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
        # The installation's marker, whatever the department (rule "loop").
        (LOOP_HEADER, org.reply_to),
        (TICKET_HEADER, str(job.ticket)),
    ]
    headers.append(("MIME-Version", "1.0"))
    head = b"".join(fold(name, value) for name, value in headers)
    first = pieces[0]
    assert isinstance(first, bytes)  # every entity starts with its header
    return Mail(sender=reply_to, recipient=recipient, message_id=own, body=Body([head + first, *pieces[1:]]))
