"""DKIM (RFC 6376): which domains signed this message, and did it survive?

Every ``DKIM-Signature`` (up to ``MAX_SIGNATURES``) is verified with dkimpy,
whose ``dnsfunc`` hook takes our resolver, so key lookups share its timeout
and TTL cache.  dkimpy answers True or False; to give RFC 8601 words
(section 2.7.1) we watch what happened on the way:

- pass: the signature verified (its ``d=`` goes into ``domains``);
- fail: the body hash or the signature does not match (altered in transit);
- permerror: no key published at the selector, a key or a signature we
  cannot use (bad tags, unknown algorithm, a key under 1024 bits, rsa-sha1
  which RFC 8301 retired);
- temperror: the key lookup failed (timeout, SERVFAIL): try later;
- none: the message is not signed.

The message's overall word is the best over its signatures, in the order
pass, temperror (it might pass later), fail, permerror, neutral.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dkim as dkimpy

from postdesk.auth.dns import DNSTempError, Resolver

MAX_SIGNATURES = 8  # more is no use to anyone and costs a key lookup each

RANK = ("pass", "policy", "temperror", "fail", "permerror", "neutral", "none")

# dkimpy logs every failed signature at ERROR: not ours to shout about.
_quiet = logging.getLogger("postdesk.auth.dkimpy")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


@dataclass(frozen=True)
class DKIMResult:
    result: str  # the best word over all signatures
    domains: tuple[str, ...] = ()  # d= of every passing signature, lower-cased
    signatures: tuple[tuple[str, str], ...] = ()  # (d=, word) per signature, in header order
    reasons: tuple[str, ...] = ()


def best(words) -> str:
    words = list(words)
    return min(words, key=RANK.index) if words else "none"


def header_block(raw: bytes) -> bytes:
    """The header section of ``raw`` or more: up to the first empty line,
    ended by LF or CRLF as dkimpy splits it (the whole message if none)."""
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    return raw[: min(ends) + 1] if ends else raw


def check(raw: bytes, resolver: Resolver) -> DKIMResult:
    if b"dkim-signature" not in header_block(raw).lower():
        # Not signed: dkimpy would split the whole message into lines to
        # find that out (2.5 ms for a 100 KB attachment).  The bytes cannot
        # hold a header dkimpy would read as a signature.
        return DKIMResult("none")
    try:
        signer = dkimpy.DKIM(raw, logger=_quiet, timeout=resolver.timeout)
    except dkimpy.DKIMException as e:
        return DKIMResult("permerror", reasons=(f"dkim: unreadable message: {e}",))
    count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    if not count:
        return DKIMResult("none")
    signatures: list[tuple[str, str]] = []
    reasons: list[str] = []
    for idx in range(min(count, MAX_SIGNATURES)):
        word, domain, reason = _verify_one(signer, idx, resolver)
        signatures.append((domain, word))
        if reason:
            reasons.append(f"dkim d={domain or '?'}: {reason}")
    if count > MAX_SIGNATURES:
        reasons.append(f"dkim: {count - MAX_SIGNATURES} signatures beyond {MAX_SIGNATURES} not checked")
    domains = tuple(dict.fromkeys(d for d, w in signatures if w == "pass" and d))
    return DKIMResult(best(w for _, w in signatures), domains, tuple(signatures), tuple(reasons))


def _verify_one(signer: dkimpy.DKIM, idx: int, resolver: Resolver) -> tuple[str, str, str]:
    """(word, d= domain, reason) for signature number ``idx``."""
    seen: dict[str, str] = {"temp": "", "missing": ""}

    def dnsfunc(name, timeout=5):
        try:
            records = resolver.txt(name)
        except DNSTempError as e:
            seen["temp"] = str(e)
            raise dkimpy.DnsTimeoutError(str(e)) from None
        if not records:
            seen["missing"] = "no key"
            return None
        return records[0]

    signer.pk = None
    signer.domain = None
    try:
        ok = signer.verify(idx=idx, dnsfunc=dnsfunc)
    except dkimpy.ValidationError as e:
        word = "fail" if "body hash mismatch" in str(e) else "permerror"
        return word, _domain(signer), str(e)[:200]
    except dkimpy.DKIMException as e:
        return "permerror", _domain(signer), f"{type(e).__name__}: {e}"[:200]
    except Exception as e:  # not the signature's fault as far as we know: cannot tell now
        return "temperror", _domain(signer), f"dkimpy: {type(e).__name__}: {e}"[:200]
    domain = _domain(signer)
    if ok and (getattr(signer, "signature_fields", {}) or {}).get(b"a", b"").lower() == b"rsa-sha1":
        # RFC 8301 section 3.1: verifiers must not consider rsa-sha1 signatures valid.
        return "permerror", domain, "rsa-sha1 is not accepted (RFC 8301)"
    if ok and b"l" in (getattr(signer, "signature_fields", {}) or {}):
        # RFC 6376 section 8.2: with a body length limit, anything appended
        # after it is unsigned, so a copy of a signed mail can carry the
        # attacker's paragraph.  Valid, but it vouches for nobody here
        # (RFC 8601 "policy": acceptable signature, refused by local policy).
        return "policy", domain, "l= body length limit: text after it is unsigned (RFC 6376 8.2)"
    if ok:
        return "pass", domain, ""
    if seen["temp"]:
        return "temperror", domain, seen["temp"]
    if seen["missing"]:
        return "permerror", domain, "no key published"
    if signer.pk is None:
        return "permerror", domain, "unusable key"
    return "fail", domain, "signature does not verify"


def _domain(signer: dkimpy.DKIM) -> str:
    d = getattr(signer, "domain", None) or b""
    return d.decode("ascii", "replace").strip().rstrip(".").lower() if isinstance(d, bytes) else str(d).lower()
