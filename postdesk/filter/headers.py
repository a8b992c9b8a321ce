"""Header values: lenient decoding, cleaning, and address extraction.

The filter reads raw header values (``EmailMessage.raw_items()``) and decodes
them itself instead of going through ``policy.default``'s header registry:
that parser raises or records defects on the malformed headers real mail is
full of, and it is slow on hostile input.  Here every step is linear and
never raises:

- 8-bit header bytes (RFC 6532 UTF-8, or a legacy charset sent raw) reach
  us as ``surrogateescape`` characters; they are decoded as UTF-8, falling
  back to latin-1.
- RFC 2047 encoded-words are decoded by hand, adjacent words joined as
  RFC 2047 section 6.2 asks; an unknown charset decodes leniently.
- ``clean_header`` removes CR, LF, NUL and every other control character
  (with ``policy.default``, a decoded CR/LF written back out by ``email``
  becomes a real header, e.g. an injected ``Bcc:``; seen with Python 3.11).
"""

from __future__ import annotations

import binascii
import re
from email.utils import getaddresses

# Hostile input: bound what we look at.  RFC 5322 limits a line to 998
# characters; no sane header value is longer than this.
MAX_HEADER = 16384
MAX_ADDRESSES = 500
MAX_REFERENCES_CHARS = 1024 * 1024

_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_WS = re.compile(r"\s+")
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: all of
# them can end or confuse a header line in some consumer.
_CONTROLS = {c: " " for c in list(range(0x00, 0x20)) + list(range(0x7F, 0xA0)) + [0x2028, 0x2029]}


def lenient_decode(data: bytes, charset: str | None = None) -> str:
    """Decode bytes as ``charset``; never raises.

    A missing or ASCII charset on 8-bit data is the common lie of old
    clients, and an unknown charset tells us nothing: both are read as
    UTF-8.  When the bytes are not valid in the charset: valid UTF-8 wins;
    then mostly-UTF-8 (some multi-byte characters decode) keeps the
    declared reading with U+FFFD for the bad bytes; otherwise latin-1,
    which decodes anything and is right for the usual legacy 8-bit text.
    """
    cs = (charset or "").strip().strip('"').lower()
    cs = cs.split("*", 1)[0]  # RFC 2231 section 5: charset*language
    if cs in ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "unknown", "utf8"):
        cs = "utf-8"
    try:
        return data.decode(cs)
    except LookupError:
        cs = "utf-8"
        try:
            return data.decode(cs)
        except UnicodeDecodeError:
            pass
    except (UnicodeDecodeError, ValueError, TypeError):
        pass
    if cs != "utf-8":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        try:
            return data.decode(cs, errors="replace")
        except (LookupError, ValueError, TypeError):
            return data.decode("latin-1")
    replaced = data.decode("utf-8", errors="replace")
    if any(c >= "\x80" and c != "\ufffd" for c in replaced):
        return replaced
    return data.decode("latin-1")


def fix_8bit(value: str) -> str:
    """Turn surrogateescape'd raw 8-bit header bytes into text (UTF-8, else latin-1)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    raw = value.encode("utf-8", "surrogateescape") if _only_escapes(value) else value.encode("utf-8", "surrogatepass")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return value.encode("utf-8", "surrogateescape").decode("latin-1", errors="replace") if _only_escapes(value) else raw.decode("utf-8", "replace")


def _only_escapes(value: str) -> bool:
    try:
        value.encode("utf-8", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False


def unfold(value: str) -> str:
    """Undo RFC 5322 folding (CRLF followed by whitespace)."""
    return _FOLD.sub("", value)


def _decode_word(charset: str, encoding: str, text: str) -> bytes:
    if encoding in "bB":
        data = text.encode("ascii", "replace")
        data += b"=" * (-len(data) % 4)
        try:
            return binascii.a2b_base64(data)
        except (binascii.Error, ValueError):
            return text.encode("ascii", "replace")
    # RFC 2047 section 4.2: "_" is a space in the Q encoding.
    data = text.replace("_", " ").encode("ascii", "replace")
    return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words in ``value``; never raises.

    Whitespace between two adjacent encoded-words is dropped, and adjacent
    words in the same charset are joined as bytes before decoding, so a
    multi-byte character split over two words survives (RFC 2047 6.2).
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    pending: list[bytes] = []
    pending_cs = ""

    def flush() -> None:
        nonlocal pending, pending_cs
        if pending:
            out.append(lenient_decode(b"".join(pending), pending_cs))
            pending = []
            pending_cs = ""

    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos : m.start()]
        if gap and (not pending or gap.strip(" \t\r\n")):
            flush()
            out.append(gap)
        charset = m.group(1).split("*", 1)[0].lower()
        data = _decode_word(charset, m.group(2), m.group(3))
        if pending and charset != pending_cs:
            flush()
        pending.append(data)
        pending_cs = charset
        pos = m.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def clean_header(value: str) -> str:
    """A header value safe to write into a mail: no CR/LF/NUL/controls, single spaces."""
    if value is None:
        return ""
    value = str(value)
    if len(value) > MAX_HEADER * 4:
        value = value[: MAX_HEADER * 4]
    value = value.translate(_CONTROLS)
    # Lone surrogates (undecodable bytes) cannot be encoded again: replace them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return _WS.sub(" ", value).strip()


def decode_header(raw: str | None) -> str:
    """Raw header value -> readable, cleaned text."""
    if not raw:
        return ""
    raw = str(raw)[:MAX_HEADER]
    return clean_header(decode_words(fix_8bit(unfold(raw))))


_ADDR_BAD = re.compile(r"[\s<>()\[\],;:\"\\\x00-\x1f\x7f]")


def clean_address(address: str) -> str:
    """Lower-cased addr-spec, or "" when it is not a plausible address."""
    a = address.strip().strip("<>").strip().lower()
    local, at, domain = a.rpartition("@")
    if not at or not local or not domain or len(a) > 320:
        return ""
    if _ADDR_BAD.search(domain) or any(c in local for c in "\r\n\x00<> \t"):
        return ""
    return a


def addresses(raw_values: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """(display name, address) pairs from raw address headers; bad entries skipped.

    Names are decoded and cleaned; addresses lower-cased.  Never raises.
    """
    values = [fix_8bit(unfold(str(v)[:MAX_HEADER])).translate(_PLACEHOLDER_CHARS) for v in raw_values if v]
    if not values:
        return []
    # An encoded-word may hide ":" "@" "," or CR/LF (hostile, or just sloppy
    # senders); getaddresses would split on them.  Parse with each word
    # replaced by a private-use placeholder atom, decode the names afterwards.
    words: list[str] = []

    def hide(m: re.Match[str]) -> str:
        words.append(m.group(0))
        return f"\ue000{len(words) - 1}\ue001"

    def unhide(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: words[int(m.group(1))] if int(m.group(1)) < len(words) else "", text)

    values = [_ENCODED_WORD.sub(hide, v) if "=?" in v else v for v in values]
    try:
        pairs = getaddresses(values)
    except Exception:  # getaddresses is lenient, but this is hostile input (RecursionError on "((((")
        pairs = []
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, addr in pairs[:MAX_ADDRESSES]:
        addr = clean_address(unhide(addr) if words else addr)
        if not addr or addr in seen:
            continue
        seen.add(addr)
        if words:
            name = unhide(name)
        out.append((clean_header(decode_words(name))[:200], addr))
    return out


_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_PLACEHOLDER_CHARS = {0xE000: None, 0xE001: None}
_MSGID = re.compile(r"<([^<>\s]{1,990})>")


def message_ids(raw: str | None, limit: int = 100) -> list[str]:
    """Message-IDs (without <>) in a Message-ID/In-Reply-To/References value.

    Keeps the last ``limit`` of a long References chain: the newest
    references are the ones that can name our ticket.
    """
    if not raw:
        return []
    raw = str(raw)
    # Postfix allows a 100 KB header; the newest references are at the end.
    found = _MSGID.findall(unfold(raw[-MAX_REFERENCES_CHARS:]))
    if not found:
        bare = clean_header(unfold(str(raw)[:1000]))
        if bare and " " not in bare and "@" in bare:
            found = [bare.strip("<>")]
    ids = [clean_header(fix_8bit(i)) for i in found]
    return [i for i in ids if i][-limit:]
