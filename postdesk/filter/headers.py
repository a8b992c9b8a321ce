"""Header values: lenient decoding, cleaning, and address extraction.

The filter reads raw header values (``EmailMessage.raw_items()``) and decodes
them itself instead of going through ``policy.default``'s header registry:
that parser raises or records defects on the malformed headers real mail is
full of, and it is slow on hostile input.  Here every step is linear and
never raises:

- 8-bit header bytes (RFC 6532 UTF-8, or a legacy charset sent raw) reach
  us as ``surrogateescape`` characters; they are decoded as UTF-8, else in
  the charset the body declares (the same client wrote both), else a guess.
- Charset labels are read leniently (``resolve_charset``): unknown aliases
  and labels narrower than what senders really write are mapped.  Only real
  character sets are used: a label naming one of Python's other codecs
  (punycode, unicode_escape, base64, ...) is an unknown charset.
- RFC 2047 encoded-words are decoded by hand, adjacent words joined as
  RFC 2047 section 6.2 asks; an unknown charset decodes leniently.
- ``clean_header`` removes CR, LF, NUL and every other control character
  (with ``policy.default``, a decoded CR/LF written back out by ``email``
  becomes a real header, e.g. an injected ``Bcc:``; seen with Python 3.11).
"""

from __future__ import annotations

import binascii
import codecs
import re
from email.utils import getaddresses

# Hostile input: bound what we look at.  RFC 5322 limits a line to 998
# characters; no sane header value is longer than this.
MAX_HEADER = 16384
MAX_ADDRESSES = 500
MAX_REFERENCES_CHARS = 1024 * 1024

_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
# The encoded text may hold spaces: invalid (RFC 2047 section 5), but common
# enough that every mail client decodes it, and so does policy.default.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?]{0,8192})\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_WS = re.compile(r"\s+")
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: all of
# them can end or confuse a header line in some consumer.
_CONTROLS = {c: " " for c in list(range(0x00, 0x20)) + list(range(0x7F, 0xA0)) + [0x2028, 0x2029]}


# Charset labels seen in real mail that Python's codecs do not know, or
# know as a narrower charset than what the sender's software really wrote
# (WHATWG Encoding Standard: "iso-8859-1" and "us-ascii" labels mean
# windows-1252, "gb2312" means GBK, "ks_c_5601-1987" and "euc-kr" mean
# windows-949, "shift_jis" means windows-31J).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "l1": "cp1252",
    "iso_8859-1": "cp1252", "iso_8859-1:1987": "cp1252", "iso-8859-9": "cp1254", "iso-8859-11": "cp874",
    "iso-8859-8-i": "iso8859-8", "iso-8859-8-e": "iso8859-8", "iso-8859-6-i": "iso8859-6", "iso-8859-6-e": "iso8859-6",
    "windows-874": "cp874", "tis-620": "cp874", "x-mac-roman": "mac-roman", "macintosh": "mac-roman",
    "x-mac-ce": "mac-latin2", "x-mac-cyrillic": "mac-cyrillic", "x-mac-greek": "mac-greek",
    "x-mac-turkish": "mac-turkish", "x-mac-icelandic": "mac-iceland", "gb2312": "gb18030", "gbk": "gb18030",
    "x-gbk": "gb18030", "euc-cn": "gb18030", "cp936": "gb18030", "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949",
    "euc-kr": "cp949", "x-euc-kr": "cp949", "shift_jis": "cp932", "shift-jis": "cp932", "x-sjis": "cp932",
    "sjis": "cp932", "windows-31j": "cp932", "x-euc-jp": "euc-jp", "big5": "big5hkscs", "x-big5": "big5hkscs",
    "cn-big5": "big5hkscs", "unicode-1-1-utf-7": "utf-7", "x-unicode20utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
    "utf8": "utf-8", "ansi_x3.4-1968": "us-ascii", "x-user-defined": "cp1252", "unknown-8bit": "",
    "x-unknown": "", "unknown": "", "default": "", "charset": "", "us-ascii": "us-ascii", "ascii": "us-ascii",
}  # fmt: skip
_CHARSET_CACHE: dict[str, str] = {}
_SINGLE_BYTE = ("cp125", "iso8859-", "latin", "mac-", "koi8", "cp437", "cp85", "cp86")
# Below this many bytes a statistical guess is noise (charset-normalizer calls
# a 6-byte KOI8-R word Shift_JIS); a short legacy text is most often cp1252.
MIN_GUESS_BYTES = 64
GUESS_SAMPLE = 64 * 1024


# Codecs Python knows that are no character set: text transforms and
# escapes (punycode's decoder is quadratic: 300 KB cost seconds of CPU),
# IDNA, Windows-only process code pages, and the bytes-to-bytes and
# str-to-str "codecs" (also refused by ``_is_text_encoding``).  A sender's
# label naming one of them is treated as an unknown charset.
_NOT_CHARSETS = frozenset(
    {
        "punycode", "idna", "unicode-escape", "raw-unicode-escape", "unicode-internal", "undefined", "charmap",
        "mbcs", "dbcs", "oem", "rot-13", "rot13", "uu", "base64", "hex", "zlib", "bz2", "quopri",
        "string-escape", "escape",
    }
)  # fmt: skip


def is_charset(info: codecs.CodecInfo) -> bool:
    """The codec is a real character set (bytes to text), not a transform."""
    if not getattr(info, "_is_text_encoding", True):
        return False
    return info.name.lower().replace("_", "-") not in _NOT_CHARSETS


def resolve_charset(label: str | None) -> str:
    """A declared charset label as a Python codec name, "" when unknown or absent.

    Lenient about what real mail writes: quotes and spaces around it, an
    RFC 2231 language suffix ("utf-8*de"), "x-" prefixes, "cp-850",
    "windows-1250", and the aliases above.  US-ASCII is "us-ascii".  Only
    character sets count (``is_charset``): "punycode", "unicode_escape",
    "base64", "rot13" and the like are unknown charsets ("").
    """
    cs = (label or "").strip().strip("'\"").strip().lower()[:64]
    cs = cs.split("*", 1)[0].strip()
    if not cs:
        return ""
    cached = _CHARSET_CACHE.get(cs)
    if cached is not None:
        return cached
    if cs in _CHARSET_ALIASES:
        candidates = [_CHARSET_ALIASES[cs]] if _CHARSET_ALIASES[cs] else []
    else:
        bare = cs.removeprefix("x-")
        candidates = [cs, bare, bare.replace("cp-", "cp").replace("windows-", "cp"), bare.replace("_", "-")]
    found = ""
    for name in candidates:
        try:
            info = codecs.lookup(name)
        except (LookupError, ValueError):
            continue
        if is_charset(info):
            found = info.name
            break
    if found in ("ascii", "us-ascii"):
        found = "us-ascii"
    if len(_CHARSET_CACHE) < 1024:
        _CHARSET_CACHE[cs] = found
    return found


def guess_charset(data: bytes) -> str:
    """The charset of unlabelled 8-bit ``data``: charset-normalizer for a
    sample long enough to tell, else cp1252; "" for ASCII or valid UTF-8."""
    if data.isascii():
        return ""
    try:
        data.decode("utf-8")
        return ""
    except UnicodeDecodeError:
        pass
    if sum(1 for b in data[:GUESS_SAMPLE] if b > 0x7F) >= MIN_GUESS_BYTES:
        try:
            from charset_normalizer import from_bytes

            best = from_bytes(data[:GUESS_SAMPLE]).best()
        except Exception:  # a guess must never cost the message
            best = None
        if best is not None and best.encoding:
            return resolve_charset(best.encoding) or "cp1252"
    return "cp1252"


def _legacy(data: bytes, hint: str = "") -> str:
    """8-bit bytes that are not UTF-8: the hint's charset if it fits, else a guess."""
    for cs in (resolve_charset(hint), guess_charset(data)):
        if cs and cs not in ("us-ascii", "utf-8"):
            try:
                return data.decode(cs)
            except (UnicodeDecodeError, LookupError, ValueError):
                continue
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
        return data.decode("latin-1")


def lenient_decode(data: bytes, charset: str | None = None, hint: str = "") -> str:
    """Decode bytes as ``charset``; never raises.

    A missing or ASCII charset on 8-bit data is the common lie of old
    clients, and an unknown charset tells us nothing: valid UTF-8 is read
    as UTF-8, anything else with ``hint`` (the charset the rest of the
    message uses), else a guess (``guess_charset``).  Valid UTF-8 under a
    single-byte label is UTF-8.  When the bytes are not
    valid in a known declared charset: valid UTF-8 wins; then mostly-UTF-8
    (some multi-byte characters decode) keeps U+FFFD for the bad bytes;
    otherwise the declared charset with replacement.
    """
    cs = resolve_charset(charset)
    if cs.startswith(_SINGLE_BYTE) and not data.isascii():
        # Valid multi-byte UTF-8 under a single-byte label is a mislabel
        # (legacy text almost never forms valid UTF-8): "GrÃ¼ÃŸe" helps nobody.
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if cs and cs != "us-ascii":
        try:
            return data.decode(cs)
        except (UnicodeDecodeError, LookupError, ValueError, TypeError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if cs in ("", "us-ascii", "utf-8"):
        replaced = data.decode("utf-8", errors="replace")
        if cs == "utf-8" and any(c >= "\x80" and c != "\ufffd" for c in replaced):
            return replaced
        return _legacy(data, hint)
    try:
        return data.decode(cs, errors="replace")
    except (LookupError, ValueError, TypeError):
        return _legacy(data, hint)


def fix_8bit(value: str, hint: str = "") -> str:
    """Turn surrogateescape'd raw 8-bit header bytes into text: UTF-8 (RFC
    6532), else ``hint`` (the body's charset), else a guess."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    if not _only_escapes(value):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _legacy(raw, hint)


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


def decode_header(raw: str | None, hint: str = "") -> str:
    """Raw header value -> readable, cleaned text (``hint``: the body's charset, for raw 8-bit)."""
    if not raw:
        return ""
    raw = str(raw)[:MAX_HEADER]
    return clean_header(decode_words(fix_8bit(unfold(raw), hint)))


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


def addresses(raw_values: list[str] | tuple[str, ...], hint: str = "") -> list[tuple[str, str]]:
    """(display name, address) pairs from raw address headers; bad entries skipped.

    Names are decoded and cleaned (``hint``: the body's charset, for raw
    8-bit names); addresses lower-cased.  Never raises.
    """
    values = [fix_8bit(unfold(str(v)[:MAX_HEADER]), hint).translate(_PLACEHOLDER_CHARS) for v in raw_values if v]
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
