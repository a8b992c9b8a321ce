"""ARC (RFC 8617): did the intermediaries that handled this mail keep a valid chain?

A mailing list that rewrites a message breaks its author's DKIM signature;
if it ARC-seals what it saw (its own Authentication-Results), the chain
says so.  postdesk verifies the chain with dkimpy (``dkim.ARC``, our
resolver as ``dnsfunc``) and records the chain's word in its own
Authentication-Results header (``arc=pass``), for people reading the support
copy.  It does not make a message verified: which intermediaries to believe
is a local policy (RFC 8617 section 7.2) postdesk does not have.

Words: pass, fail, none (no ARC headers), temperror (a key lookup failed).
"""

from __future__ import annotations

import dkim as dkimpy

from postdesk.auth.dkim import _quiet
from postdesk.auth.dns import DNSTempError, Resolver


def check(raw: bytes, resolver: Resolver) -> tuple[str, str]:
    """(word, reason) for the ARC chain of ``raw``."""
    if b"arc-seal:" not in raw[: raw.find(b"\r\n\r\n") if b"\r\n\r\n" in raw else len(raw)].lower():
        return "none", ""  # the common case: not sealed, no parsing at all
    temp: list[str] = []

    def dnsfunc(name, timeout=5):
        try:
            records = resolver.txt(name)
        except DNSTempError as e:
            temp.append(str(e))
            raise dkimpy.DnsTimeoutError(str(e)) from None
        return records[0] if records else None

    try:
        cv, _results, reason = dkimpy.ARC(raw, logger=_quiet, timeout=resolver.timeout).verify(dnsfunc=dnsfunc)
    except dkimpy.DKIMException as e:
        return "fail", f"arc: {type(e).__name__}: {e}"[:200]
    word = (cv or b"fail").decode("ascii", "replace").lower()
    if word == "fail" and temp:
        return "temperror", f"arc: {temp[0]}"
    if word not in ("pass", "fail", "none"):
        word = "fail"
    return word, "" if word in ("pass", "none") else f"arc: {reason}"[:200]
