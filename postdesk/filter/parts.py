"""Walking a MIME tree and getting a part's content, safely.

Shared by the body, HTML and attachment steps.  ``get_content()`` raises
``KeyError`` on a part declared ``multipart/*`` without a usable boundary and
``LookupError`` on an unknown charset (both seen in real-world mail), and
trusts charset labels real mail gets wrong; text is read here as
``get_payload(decode=True)`` and a lenient decode (``headers.lenient_decode``).
Header parameters (filename, charset) are read with the same guards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import Message

from postdesk.filter import headers as hdr

MAX_DEPTH = 30
MAX_PARTS = 1000


def content_type(part: Message) -> str:
    try:
        ct = part.get_content_type()
    except Exception:
        return "application/octet-stream"
    return hdr.clean_header(ct).lower()[:255] or "application/octet-stream"


def param(part: Message, name: str, header: str = "content-type") -> str:
    try:
        value = part.get_param(name, None, header=header)
    except Exception:
        return ""
    if value is None:
        return ""
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        try:
            from email.utils import collapse_rfc2231_value

            value = collapse_rfc2231_value(value)
        except Exception:
            value = str(value[-1])
    return str(value)


def disposition(part: Message) -> str:
    try:
        d = part.get_content_disposition()
    except Exception:
        return ""
    return (d or "").lower()


def is_container(part: Message) -> bool:
    """A multipart we can descend into (a declared multipart without a boundary is a leaf)."""
    try:
        return part.get_content_maintype() == "multipart" and part.is_multipart()
    except Exception:
        return False


def children(part: Message) -> list[Message]:
    try:
        payload = part.get_payload()
    except Exception:
        return []
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def payload_bytes(part: Message) -> bytes:
    """Transfer-decoded bytes of a leaf part; never raises."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    try:
        raw = part.get_payload()
    except Exception:
        return b""
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    if isinstance(raw, bytes):
        return raw
    return b""


# HTML from web forms often declares its charset only inside the document.
_META_CHARSET = re.compile(rb"""<meta[^>]{0,300}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.+-]{1,40})""", re.IGNORECASE)


def declared_charset(part: Message, data: bytes = b"") -> str:
    """The part's charset label: the Content-Type parameter, else (HTML) a <meta> in the first 4 KB."""
    charset = param(part, "charset")
    if (not charset or charset.strip().lower() in ("us-ascii", "ascii")) and content_type(part) == "text/html":
        m = _META_CHARSET.search(data[:4096])
        if m:
            return m.group(1).decode("ascii")
    return charset


def transfer_encoding(part: Message) -> str:
    try:
        return str(part.get("content-transfer-encoding", "") or "").strip().lower()
    except Exception:
        return ""


def encoded_message_bytes(part: Message) -> bytes:
    """The bytes of a message/rfc822 part sent with a base64 or quoted-printable
    transfer encoding (against RFC 2046 5.2.1): the parser made a sub-message
    of the encoded text, so the raw text is taken back and decoded here."""
    import base64
    import quopri

    raw = b""
    inner = children(part)
    try:
        if inner:
            raw = inner[0].as_bytes()
        else:
            payload = part.get_payload()
            raw = payload.encode("ascii", "surrogateescape") if isinstance(payload, str) else b""
    except Exception:
        return payload_bytes(part)
    cte = transfer_encoding(part)
    try:
        if cte == "base64":
            return base64.b64decode(b"".join(raw.split()), validate=False)
        if cte == "quoted-printable":
            return quopri.decodestring(raw)
    except Exception:
        pass
    return raw


def text(part: Message) -> str:
    """A text part's content as str; never raises.

    ``get_content()`` would raise on an unknown charset and trusts a label
    that real mail often gets wrong; the transfer-decoded bytes go through
    ``headers.lenient_decode`` instead (aliases, valid UTF-8 under a wrong
    label, a guess for unlabelled 8-bit text).
    """
    data = payload_bytes(part)
    return hdr.lenient_decode(data, declared_charset(part, data) or None)


def leaves(msg: Message) -> Iterator[tuple[Message, bool]]:
    """(leaf part, inside a multipart/alternative), depth-first, in message order.

    message/* parts are leaves (an attached mail is stored whole, not
    descended into).  Depth and count are bounded: hostile nesting must
    not cost more than a normal message.
    """
    count = 0
    stack: list[tuple[Message, int, bool]] = [(msg, 0, False)]
    while stack:
        part, depth, alternative = stack.pop()
        if is_container(part) and depth < MAX_DEPTH:
            alt = alternative or content_type(part) == "multipart/alternative"
            stack.extend((c, depth + 1, alt) for c in reversed(children(part)))
            continue
        count += 1
        if count > MAX_PARTS:
            return
        yield part, alternative


def filename(part: Message) -> str:
    """The sender's filename (Content-Disposition filename, else Content-Type name), decoded, not yet cleaned."""
    name = ""
    try:
        name = part.get_filename() or ""
    except Exception:
        name = param(part, "filename", "content-disposition") or param(part, "name")
    name = str(name)
    if "\ufffd" in name:
        name = _raw_8bit_filename(part) or name
    return hdr.decode_words(hdr.fix_8bit(name))


def _raw_8bit_filename(part: Message) -> str:
    """A filename sent as raw 8-bit bytes: the header registry has already
    replaced them by U+FFFD, so the raw header is decoded (UTF-8, else the
    part's charset, else a guess) and its parameter read again."""
    for header, key in (("content-disposition", "filename"), ("content-type", "name")):
        for name, value in _raw_items(part):
            if name.lower() != header:
                continue
            fixed = hdr.fix_8bit(hdr.unfold(str(value)[: hdr.MAX_HEADER]), param(part, "charset"))
            probe = Message()
            probe[header] = fixed
            found = probe.get_param(key, None, header=header)
            if isinstance(found, tuple):
                found = found[-1]
            if found:
                return str(found)
    return ""


def content_id(part: Message) -> str:
    raw = ""
    for key, value in _raw_items(part):
        if key.lower() == "content-id":
            raw = str(value)
            break
    if not raw:
        return ""
    return hdr.clean_header(hdr.unfold(raw[:1000])).strip().strip("<>").strip()[:255]


def _raw_items(part: Message) -> list[tuple[str, str]]:
    try:
        return list(part.raw_items())
    except Exception:
        return []


def classify(part: Message, in_alternative: bool = False) -> str:
    """"body" (text/plain or text/html inline text), "attachment" or "skip"."""
    ct = content_type(part)
    if ct in ("message/rfc822", "message/global"):
        return "attachment"
    if ct.startswith("message/"):
        return "skip"  # delivery-status and feedback reports: report machinery, not content
    if ct.startswith("multipart/") and is_container(part):
        return "skip"
    disp = disposition(part)
    if disp == "attachment":
        return "attachment"
    if ct.startswith("multipart/"):
        # Declared multipart but no usable boundary: its raw text is all we have.
        return "body"
    name = filename(part)
    if ct in ("text/plain", "text/html") and not name:
        return "body"
    if name or content_id(part):
        return "attachment"
    if ct.startswith("text/") and in_alternative:
        return "skip"  # another rendering of the body (text/enriched, text/watch-html)
    return "attachment"
