"""Sender authentication: who really wrote a message (SPF, DKIM, DMARC).

``authenticate`` gives the verdict (``AuthResult``, ``result.py``) that the
filter reads and the store records on the action.  It runs before the
store's transaction (DNS never waits while a database lock is held) and
decides, in this order:

1. ``[trust] authserv_id`` is set and the message carries an
   Authentication-Results header of that verifier (``headers.py``): its
   spf/dkim/dmarc words are taken (source ``authserv-id:<id>``); DMARC is
   evaluated here from its SPF/DKIM results when it gave none.
2. else, with ``[trust] verify`` (the default): SPF (``spf.py``), DKIM
   (``dkim.py``), DMARC (``dmarc.py``) and ARC (``arc.py``, recorded only)
   are checked here against the resolver of ``[dns]`` (``dns.py``)
   (source ``local``);
3. else nothing is checked: ``UNCHECKED``.

It never raises and never refuses mail: a DNS failure is a ``temperror``
(neither authenticated nor refuted), and an internal error gives
temperror words, a reason, and one warning line with the queue id.
"""

from __future__ import annotations

import logging

from postdesk.auth.result import UNCHECKED, AuthResult

# The checkers (dnspython, dkimpy, pyspf, authres, the public suffix list:
# about 0.2 s to import, 0.1 s to load the list) are imported when a message
# is first checked, not by everything that imports AuthResult: the CLI's
# other commands and the pipe filter's start-up do not pay for them.

log = logging.getLogger("postdesk")

TEMPERROR = "temperror"


def from_domain_of(parsed) -> str:
    """The RFC5322.From domain, when From: names exactly one address (RFC 7489 6.6.1).

    Read with the filter's own address parser (``postdesk.filter.headers``),
    so the domain judged here is the domain of the author the desk records:
    a From: that two parsers read differently must not be judged for one
    address and recorded for another."""
    from postdesk.filter.headers import addresses

    values = parsed.raw_headers("From")
    if len(values) != 1:
        return ""
    found = [a for _, a in addresses(values) if a]
    if len(found) != 1 or "@" not in found[0]:
        return ""
    return found[0].rpartition("@")[2].strip().strip(">").rstrip(".").lower()


def envelope_domain(envelope) -> str:
    """MAIL FROM's domain, or the HELO name for the null sender (RFC 7208 2.4)."""
    if envelope.sender:
        return envelope.sender.rpartition("@")[2].strip().rstrip(".").lower()
    return (envelope.helo or "").strip().rstrip(".").lower()


def envelope_aligned(envelope, from_domain: str) -> bool:
    """MAIL FROM is of From:'s organisation (true for the null sender or no From: domain)."""
    from postdesk.auth import domains

    if not envelope.sender or not from_domain:
        return True
    return domains.aligned(envelope_domain(envelope), from_domain, "r")


def authenticate(parsed, raw: bytes, envelope, config) -> AuthResult:
    """The verdict for one message (called by ``postdesk.ingest``).  Never raises."""
    from postdesk.auth.dns import BUDGET_TIMEOUTS, budget

    try:
        with budget(BUDGET_TIMEOUTS * float(config.dns.timeout)):
            result = _authenticate(parsed, raw, envelope, config)
    except Exception as e:  # a bug or a message no library could read: never lose the mail
        reason = f"internal error: {type(e).__name__}: {e}"[:300]
        log.warning('%s: auth=temperror reason="%s"', envelope.queue_id or "NOQUEUE", reason)
        try:
            domain = from_domain_of(parsed)
        except Exception:
            domain = ""
        return AuthResult(spf=TEMPERROR, dkim=TEMPERROR, dmarc=TEMPERROR, from_domain=domain, source="local", reasons=(reason,))
    if TEMPERROR in (result.spf, result.dkim, result.dmarc) and result.source == "local":
        log.warning('%s: auth=%s reason="%s"', envelope.queue_id or "NOQUEUE", result.summary(), "; ".join(result.reasons)[:300])
    return result


def _authenticate(parsed, raw: bytes, envelope, config) -> AuthResult:
    from postdesk.auth import headers as headersmod

    authserv_id = config.trust.authserv_id.strip()
    from_domain = from_domain_of(parsed)
    if authserv_id:
        values, below = headersmod.positions(parsed.message.raw_items())
        idx = headersmod.trusted_index(values, authserv_id, below)
        if idx is not None:
            return _from_header(values[idx], authserv_id, from_domain, envelope, config)
    if not config.trust.verify:
        return UNCHECKED
    return _local(raw, envelope, from_domain, config)


def _local(raw: bytes, envelope, from_domain: str, config) -> AuthResult:
    from postdesk.auth import arc as arcmod
    from postdesk.auth import dkim as dkimmod
    from postdesk.auth import dmarc as dmarcmod
    from postdesk.auth import spf as spfmod
    from postdesk.auth.dns import resolver_for

    resolver = resolver_for(config)
    spf = spfmod.check(envelope.client_address, envelope.sender, envelope.helo, resolver)
    dkim = dkimmod.check(raw, resolver)
    arc, arc_reason = arcmod.check(raw, resolver)
    dmarc = dmarcmod.evaluate(from_domain, spf.result, spf.domain, dkim.domains, resolver)
    reasons = []
    if spf.result not in ("pass", "none") and spf.explanation:
        reasons.append(f"spf {spf.identity}={spf.domain}: {spf.explanation}")
    reasons += dkim.reasons
    if arc_reason:
        reasons.append(arc_reason)
    if dmarc.reason:
        reasons.append(dmarc.reason)
    if dmarc.policy is not None:
        reasons.append(f"dmarc p={dmarc.policy.p} at {dmarc.policy.domain}")
    return AuthResult(
        spf=spf.result,
        dkim=dkim.result,
        dmarc=dmarc.result,
        from_domain=from_domain,
        spf_domain=spf.domain,
        dkim_domains=dkim.domains,
        spf_aligned=dmarc.spf_aligned,
        dkim_aligned=dmarc.dkim_aligned,
        envelope_aligned=envelope_aligned(envelope, from_domain),
        source="local",
        reasons=tuple(reasons),
        arc=arc,
    )


def _from_header(value: str, authserv_id: str, from_domain: str, envelope, config) -> AuthResult:
    from postdesk.auth import dmarc as dmarcmod
    from postdesk.auth import headers as headersmod
    from postdesk.auth.dns import resolver_for

    source = f"authserv-id:{authserv_id}"
    try:
        r = headersmod.read(value)
    except Exception as e:
        # Our own verifier wrote something we cannot read: say so, decide nothing.
        return AuthResult(spf=TEMPERROR, dkim=TEMPERROR, dmarc=TEMPERROR, from_domain=from_domain, source=source, reasons=(f"unreadable Authentication-Results: {type(e).__name__}: {e}"[:300],))
    reasons = []
    spf_domain = r.spf_domain or envelope_domain(envelope)
    dmarc = r.dmarc
    if "dmarc" in r.methods and r.from_domain and from_domain and r.from_domain != from_domain:
        # The verifier judged another From: domain than the one we read.
        reasons.append(f"dmarc header.from={r.from_domain} is not From: {from_domain}")
        dmarc = "none"
    if "dmarc" not in r.methods and config.trust.verify and from_domain:
        local = dmarcmod.evaluate(from_domain, r.spf, spf_domain, r.dkim_domains, resolver_for(config))
        dmarc = local.result
        reasons.append("dmarc evaluated here from the trusted spf/dkim results")
        spf_ok, dkim_ok = local.spf_aligned, local.dkim_aligned
    else:
        spf_ok = r.spf == "pass" and dmarcmod.aligned(spf_domain, from_domain)
        dkim_ok = any(dmarcmod.aligned(d, from_domain) for d in r.dkim_domains)
    if dmarc == "fail":
        # The verifier applied the policy's alignment modes: nothing aligned.
        spf_ok = dkim_ok = False
    return AuthResult(
        spf=r.spf,
        dkim=r.dkim,
        dmarc=dmarc,
        from_domain=from_domain,
        spf_domain=spf_domain,
        dkim_domains=r.dkim_domains,
        spf_aligned=spf_ok,
        dkim_aligned=dkim_ok,
        envelope_aligned=envelope_aligned(envelope, from_domain),
        source=source,
        reasons=tuple(reasons),
    )


__all__ = ["AuthResult", "UNCHECKED", "authenticate"]
