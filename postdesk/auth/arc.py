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

MAX_SETS = 10  # intermediaries a real message passes; RFC 8617 allows up to 50


def check(raw: bytes, resolver: Resolver) -> tuple[str, str]:
    """(word, reason) for the ARC chain of ``raw``."""
    head = raw[: raw.find(b"\r\n\r\n") if b"\r\n\r\n" in raw else len(raw)].lower()
    if b"arc-seal:" not in head:
        return "none", ""  # the common case: not sealed, no parsing at all
    sets = head.count(b"\narc-seal:") + head.startswith(b"arc-seal:")
    if sets > MAX_SETS:
        # Each set costs two key lookups; a chain this long is an attack on
        # our time, not a mail that passed through that many lists.
        return "fail", f"arc: {sets} sets, more than {MAX_SETS}: not checked"
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
