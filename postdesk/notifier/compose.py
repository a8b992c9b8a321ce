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
than the email package's folding.

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
from typing import Protocol
from urllib.parse import quote

from postdesk.config import Config
from postdesk.filter import clean_header
from postdesk.mail import LOOP_HEADER, REPLY_MARKER, TICKET_HEADER
from postdesk.msgid import make_message_id
from postdesk.notifier import refusal
from postdesk.outbox_rows import AttachmentInfo, Entry, Job, Person

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


def _when(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{n} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def _tag(config: Config, job: Job) -> str:
    return f"[{config.organization.tag}{job.ticket}]"


def _signature(config: Config, job: Job) -> str:
    """The name the mail is signed with: the ticket's department's."""
    return clean(config.department(job.department).display_name) or clean(config.organization.name)


def _who(person: Person | None, config: Config, job: Job) -> str:
    if person is None:
        return _signature(config, job)
    if person.staff:
        # Customers see staff by name, not by address: replies go to the desk.
        return clean(person.name) or _signature(config, job)
    return clean(person.label())


def _attachment_lines(entry: Entry) -> list[str]:
    return [f"  - {clean(a.filename) or 'attachment'} ({clean(a.content_type)}, {_size(a.size)})" for a in entry.attachments]


def ack_text(job: Job, config: Config) -> str:
    hello = f"Hello {clean(job.recipient.name)}," if clean(job.recipient.name) else "Hello,"
    tag = _tag(config, job)
    return "\n".join(
        [
            REPLY_MARKER,
            "",
            hello,
            "",
            f"we have received your message and opened ticket {tag}:",
            f"  {clean(job.subject) or '(no subject)'}",
            "",
            "Our team will get back to you. To add anything, reply to this mail",
            f"and keep {tag} in the subject.",
            "",
            "-- ",
            _signature(config, job),
            "",
        ]
    )


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = round(seconds / size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = max(1, round(seconds))
    return f"{n} second{'s' if n != 1 else ''}"


def reminder_text(job: Job, config: Config) -> str:
    """The one reminder of a ticket waiting for the customer's answer."""
    hello = f"Hello {clean(job.recipient.name)}," if clean(job.recipient.name) else "Hello,"
    tag = _tag(config, job)
    left = float(config.lifecycle.pending_close) - float(config.lifecycle.pending_reminder)
    lines = [
        REPLY_MARKER,
        "",
        hello,
        "",
        f"we are waiting for your answer on ticket {tag}:",
        f"  {clean(job.subject) or '(no subject)'}",
        "",
        f"To answer, reply to this mail and keep {tag} in the subject.",
    ]
    if float(config.lifecycle.pending_close) and left > 0:
        lines.append(f"If we do not hear from you, the ticket will be closed in about {_duration(left)}.")
    lines += ["", "-- ", _signature(config, job), ""]
    return "\n".join(lines)


def bounce_alert_text(job: Job, config: Config) -> str:
    """To the owner (or the team): our mail on a ticket did not reach someone."""
    tag = _tag(config, job)
    lines = [REPLY_MARKER, "", f"Mail on ticket {tag} could not be delivered: {clean(job.subject) or '(no subject)'}", ""]
    for entry in job.entries:
        lines.append(f"Report received: {_when(entry.created_at)}")
        lines += ["", entry.text.rstrip() or "(the report named no recipient)", ""]
    lines += [
        "The customer does not get our answers at this address. Find another way",
        f"to reach them, or note it on {tag} (reply with [pvt] to keep it internal).",
        "",
        "-- ",
        _signature(config, job),
        "",
    ]
    return "\n".join(lines)


def alert_text(job: Job, config: Config) -> str:
    tag = _tag(config, job)
    lines = [REPLY_MARKER, ""]
    for entry in job.entries:
        who = entry.author.label() if entry.author else "(unknown sender)"
        what = "New ticket" if job.new_ticket else "New reply on ticket"
        lines.append(f"{what} {tag} from {clean(who)}")
        lines.append(f"Subject: {clean(job.subject) or '(no subject)'}")
        lines.append(f"Received: {_when(entry.created_at)}")
        if not entry.public:
            flags = ", ".join(sorted(entry.flags)) or "private"
            lines.append(f"Private action ({flags}): customers are not told about it.")
        lines += ["", entry.text.rstrip() or "(no text)", ""]
        if entry.attachments:
            lines.append("Attachments:")
            lines += _attachment_lines(entry)
            lines.append("")
    lines += [
        "-- ",
        f"Reply to this mail to answer on {tag}; put [pvt] in your reply to keep it",
        "internal, [closed] to close the ticket.",
        "",
    ]
    return "\n".join(lines)


def update_text(job: Job, config: Config) -> str:
    tag = _tag(config, job)
    lines = [REPLY_MARKER, "", f"Ticket {tag}: {clean(job.subject) or '(no subject)'}", ""]
    for entry in job.entries:
        if entry.kind == "status":
            lines.append(f"{_when(entry.created_at)}: {entry.text.strip() or 'status changed to ' + job.status}")
            lines.append("")
            continue
        lines.append(f"{_who(entry.author, config, job)} wrote on {_when(entry.created_at)}:")
        lines += ["", entry.text.rstrip() or "(no text)", ""]
        if entry.attachments:
            lines.append("Attached:")
            lines += _attachment_lines(entry)
            lines.append("")
    lines += ["-- ", f"To answer, reply to this mail and keep {tag} in the subject.", _signature(config, job), ""]
    return "\n".join(lines)


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


def _mixed_entity(text: str, attachments: list[tuple[AttachmentInfo, Source]]) -> tuple[bytes, list[bytes | Base64Stream]]:
    """multipart/mixed: the text, then the attachments, streamed (RFC 2046 5.1.1)."""
    boundary = "=_postdesk_" + secrets.token_hex(12)
    text_part = _text_entity(text)
    if not text_part.endswith(b"\r\n"):
        text_part += b"\r\n"
    first = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n--{boundary}\r\n'.encode("ascii") + text_part
    pieces: list[bytes | Base64Stream] = []
    for info, source in attachments:
        pieces.append(f"\r\n--{boundary}\r\n".encode("ascii") + _attachment_headers(info))
        pieces.append(Base64Stream(source))
    pieces.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return first, pieces


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

    if job.kind == "ack":
        text, auto = ack_text(job, config), "auto-replied"
    elif job.kind == "alert":
        text, auto = alert_text(job, config), "auto-generated"
    elif job.kind == "update":
        text, auto = update_text(job, config), "auto-generated"
    elif job.kind == "reminder":
        text, auto = reminder_text(job, config), "auto-generated"
    elif job.kind == "bounce-alert":
        text, auto = bounce_alert_text(job, config), "auto-generated"
    elif job.kind == "refusal":
        text, auto = refusal.text(job, config, clean), "auto-replied"
    else:
        raise ComposeError(f"unknown outbox kind {job.kind!r}")

    attachments: list[tuple[AttachmentInfo, Source]] = []
    if job.kind == "update" and read_attachment is not None:
        for entry in job.entries:
            for info in entry.attachments:
                got = read_attachment(info.sha256)
                attachments.append((info, _Bytes(got) if isinstance(got, bytes) else got))
    entity, streams = _mixed_entity(text, attachments) if attachments else (_text_entity(text), [])

    own = make_message_id(job.ticket, secret, domain)
    subject = f"{_tag(config, job)} {clean(job.subject)[:MAX_SUBJECT]}".rstrip()
    if job.kind == "refusal":
        subject = f"Not done: {subject}"

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
    return Mail(sender=reply_to, recipient=recipient, message_id=own, body=Body([head + entity, *streams]))
