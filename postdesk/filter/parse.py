"""Step 1: bytes -> Parsed.  Never raises.

``email`` with ``policy.default`` reads almost anything and records what is
wrong as defects instead of raising.  The few ways it can
still fail (deep nesting -> RecursionError, pathological input) fall back
to a headers-only parse, then to an empty message that keeps the raw bytes
as its body, so a message is never lost for being malformed.

Headers are kept raw (``raw_items()``), indexed by lower-cased name, and
decoded by ``postdesk.filter.headers``, which is linear and lenient.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.policy import EmailPolicy
from typing import Any, TypeVar, cast

from postdesk.filter import headers as hdr
from postdesk.filter import parts

T = TypeVar("T")
MAX_DEFECTS = 50
MAX_PARSED_HEADER = 8192  # characters of one header value given to the header registry
_CACHE_SIZE = 512


class FilterPolicy(EmailPolicy):
    """``policy.default`` with two guards for the header registry.

    The registry's structured parsers (Content-Type parameters, addresses)
    cost about 0.1 ms per parameter and run again on every fetch: a 100 KB
    Content-Type with 20,000 parameters took 25 s, because the parser itself
    and then each of our calls re-parsed it.  So a fetched value is cut to
    MAX_PARSED_HEADER characters (an RFC 2231 filename of 255 UTF-8
    characters is about 2,300) and the parsed header objects, which are
    immutable, are cached by (name, value).  The raw header stays untouched.
    """

    def header_fetch_parse(self, name, value):
        if hasattr(value, "name"):
            return value
        if len(value) > MAX_PARSED_HEADER:
            value = value[:MAX_PARSED_HEADER]
        key = (name, value)  # bounded: at most _CACHE_SIZE x 8 KB
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        header = super().header_fetch_parse(name, value)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = header
        return header


_CACHE: dict[tuple[str, str], object] = {}
POLICY = FilterPolicy()


@dataclass
class Parsed:
    """A parsed message: the EmailMessage, the raw size and hash, the defects."""

    message: EmailMessage
    size: int
    sha256: str  # hex digest of the raw bytes
    body_sha256: str = ""  # hex digest of the body (after the blank line), line ends as LF
    defects: tuple[str, ...] = ()
    _index: dict[str, list[str]] | None = field(default=None, repr=False)
    _hint: str | None = field(default=None, repr=False)
    _memo: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per message and ``key``: what the rules read
        from the message alone (headers, body, language), worked out by
        ``postdesk.filter.pipeline.read_ahead`` before the store's
        transaction and found here by the rules inside it."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    def raw_headers(self, name: str) -> list[str]:
        """All raw values of header ``name`` (any case), in message order."""
        if self._index is None:
            index: dict[str, list[str]] = {}
            try:
                items = self.message.raw_items()
                for key, value in items:
                    index.setdefault(str(key).lower(), []).append(value if isinstance(value, str) else str(value))
            except Exception:
                pass
            self._index = index
        return self._index.get(name.lower(), [])

    def raw_header(self, name: str) -> str:
        values = self.raw_headers(name)
        return values[0] if values else ""

    def header(self, name: str) -> str:
        """The first value of ``name``, decoded and cleaned ("" when absent)."""
        raw = self.raw_header(name)
        return hdr.decode_header(raw, self.charset_hint if not raw.isascii() else "")

    @property
    def charset_hint(self) -> str:
        """The charset of the message's text, for raw 8-bit headers: the same
        client wrote both.  The first text part's declared charset, else a
        guess from its bytes; "" when there is nothing to go on."""
        if self._hint is None:
            self._hint = _charset_hint(self.message)
        return self._hint

    def has(self, name: str) -> bool:
        return bool(self.raw_headers(name))

    @property
    def key(self) -> str:
        """Stable identity for duplicates: Message-ID, else sha256 of the raw bytes."""
        ids = hdr.message_ids(self.raw_header("message-id"), limit=1)
        return ids[0] if ids else f"sha256:{self.sha256}"


def _defects(msg: EmailMessage) -> tuple[str, ...]:
    out: list[str] = []
    try:
        for part in msg.walk():
            for d in getattr(part, "defects", ()):
                out.append(type(d).__name__)
                if len(out) >= MAX_DEFECTS:
                    return tuple(out)
    except Exception as e:  # walking a broken tree
        out.append(type(e).__name__)
    return tuple(out)


def _charset_hint(msg: EmailMessage) -> str:
    try:
        for part, _ in parts.leaves(msg):
            if not parts.content_type(part).startswith("text/") or parts.disposition(part) == "attachment":
                continue
            declared = hdr.resolve_charset(parts.param(part, "charset"))
            if declared and declared not in ("us-ascii", "utf-8"):
                return declared
            return hdr.guess_charset(parts.payload_bytes(part))
    except Exception:  # a hint is optional; never cost the message
        pass
    return ""


def body_digest(raw: bytes) -> str:
    """SHA-256 of the body: what follows the header's blank line (RFC 5322
    section 2.1), CRLF read as LF and trailing blank lines dropped, so the
    same message handed over by the milter or by pipe(8) hashes the same."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := raw.find(sep)) >= 0]
    body = b""
    if ends:
        i, n = min(ends)
        body = raw[i + n :].replace(b"\r\n", b"\n").rstrip(b"\n")
    return hashlib.sha256(body).hexdigest()


def parse(raw: bytes) -> Parsed:
    """Parse raw message bytes; never raises."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    elif not isinstance(raw, (bytes, bytearray, memoryview)):
        raw = b""
    raw = bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    extra: list[str] = []
    try:
        # POLICY makes EmailMessage objects; the stubs say Message.
        msg = cast(EmailMessage, BytesParser(policy=POLICY).parsebytes(raw))
    except Exception as e:
        extra.append(f"ParseError:{type(e).__name__}")
        try:
            msg = cast(EmailMessage, BytesHeaderParser(policy=POLICY).parsebytes(raw))
        except Exception as e2:
            extra.append(f"HeaderParseError:{type(e2).__name__}")
            msg = EmailMessage(policy=POLICY)
            try:
                msg.set_payload(raw.decode("utf-8", "replace"))
            except Exception:
                pass
    return Parsed(message=msg, size=len(raw), sha256=digest, body_sha256=body_digest(raw), defects=tuple(extra) + _defects(msg))
