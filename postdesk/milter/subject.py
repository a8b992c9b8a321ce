"""Subject tagging: ``[#N] original``, done so nothing the sender wrote breaks.

Rules, and why:

- Existing RFC 2047 encoded-words are kept byte for byte: we only prepend
  ASCII text and a space, and RFC 2047 section 5 needs exactly that
  whitespace between an encoded-word and plain text.
- A raw 8-bit Subject (no encoding, often UTF-8, sometimes Latin-1) is
  re-encoded as RFC 2047 UTF-8 encoded-words: libmilter gives it to us as
  bytes and handing undecodable bytes back to pymilter raises UnicodeEncodeError (a
  451 for the sender; pymilter 1.0.5).
- Never tagged twice: when the subject already carries this ticket's tag
  (``postdesk.filter.find_tag``, any position and case) it is left alone.
- ``smfi_chgheader`` values must not contain CRLF: folded with LF + space,
  and kept under 2048 characters (checked with Postfix 3.7).
"""

from __future__ import annotations

import re
from email.header import Header, decode_header, make_header

from postdesk.filter.headers import resolve_charset

MAX_VALUE = 2047  # characters; libmilter/Postfix limit on one header value
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def find_tag(subject: str, tag: str) -> int | None:
    """The ticket number tagged in a decoded Subject (the filter's rule)."""
    from postdesk.filter import find_tag as _find_tag

    return _find_tag(subject, tag)


def to_text(raw: bytes) -> str:
    """Bytes from the milter -> str: UTF-8, else Windows-1252, else Latin-1."""
    for charset in ("utf-8", "cp1252"):
        try:
            return raw.decode(charset)
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")


def decode(raw: bytes | None) -> str:
    """The Subject as a reader sees it: unfolded, encoded-words decoded."""
    if raw is None:
        return ""
    text = _FOLD.sub("", to_text(raw))
    if not raw.isascii():
        return text
    try:
        words = decode_header(text)
        if any(charset and not resolve_charset(charset) for _, charset in words):
            return text  # punycode, unicode_escape, base64 ...: not a character set (filter.headers)
        return str(make_header(words))
    except (LookupError, ValueError, UnicodeError):
        return text  # unknown charset or broken encoded-word: show it as is


def _clean_ascii(value: str) -> str:
    """Line ends as libmilter wants them: LF followed by whitespace, no CR."""
    value = value.replace("\r\n", "\n").replace("\r", "")
    return re.sub(r"\n(?![ \t])", "\n ", value).rstrip("\n")


def _encode(prefix: str, text: str) -> str:
    """``prefix`` + RFC 2047 UTF-8 encoded-words, folded with LF + space."""
    if not text:
        return prefix.rstrip()
    while True:
        encoded = Header(text, "utf-8", header_name="Subject", continuation_ws=" ").encode(linesep="\n")
        value = prefix + encoded
        if len(value) <= MAX_VALUE:
            return value
        text = text[: int(len(text) * 0.8)]  # too long: keep the start of it


def tagged(raw: bytes | None, ticket: int, tag: str = "#") -> str | None:
    """The new Subject value for ``ticket``, or None when it already carries the tag.

    ``raw`` is the Subject header value as libmilter gave it (bytes, leading
    space stripped, folds as LF + whitespace); ``None`` when there is none.
    """
    prefix = f"[{tag}{ticket}] "
    if raw is None:
        return prefix.rstrip()
    if find_tag(decode(raw), tag) == ticket:
        return None
    if raw.isascii():
        value = prefix + _clean_ascii(raw.decode("ascii"))
        if len(value) <= MAX_VALUE:
            return value.rstrip()
    return _encode(prefix, decode(raw).replace("\r", "").replace("\n", ""))
