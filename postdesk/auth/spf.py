"""SPF (RFC 7208): may the client's IP send for the MAIL FROM (or HELO) domain?

We use pyspf's evaluator (``spf.query``): macros, include/redirect, the
10-lookup and 2-void-lookup limits (RFC 7208 section 4.6.4) and ``exp=`` are
a lot of well-tested code we would otherwise rewrite.

pyspf has no per-query resolver argument: ``spf.query.dns`` calls the module
function ``spf.DNSLookup(name, qtype, strict, timeout)``, which goes to
dnspython's default resolver (/etc/resolv.conf) with no cache across
messages.  So at import we replace ``spf.DNSLookup`` once with ``_lookup``,
which asks the resolver bound to the current thread by ``check`` (a
``threading.local``: each milter thread checks with its own config's
resolver and our TTL cache), and falls back to pyspf's own lookup outside
``check``.  A ``DNSTempError`` becomes pyspf's ``TempError``, which pyspf
reports as ``temperror``.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass

import spf as pyspf

from postdesk.auth.dns import DNSTempError, Resolver

# RFC 7208 section 4.6.4: at most 20 seconds for the whole evaluation.
MAX_SECONDS = 20.0

_local = threading.local()
_pyspf_lookup = pyspf.DNSLookup


def _lookup(name: str, qtype: str, strict: bool = True, timeout: float = 30) -> list:
    """pyspf's DNSLookup contract: [((name, qtype), data), ...]."""
    resolver: Resolver | None = getattr(_local, "resolver", None)
    if resolver is None:
        return _pyspf_lookup(name, qtype, strict, timeout)
    try:
        rdata = resolver.query(name, qtype)
    except DNSTempError as e:
        raise pyspf.TempError(f"DNS {e}") from None
    out = []
    for r in rdata:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), r.address))
        elif qtype == "MX":
            out.append(((name, qtype), (r.preference, r.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), r.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), r.strings))
    return out


pyspf.DNSLookup = _lookup


@dataclass(frozen=True)
class SPFResult:
    result: str  # RFC 8601 words: pass fail softfail neutral none temperror permerror
    domain: str  # the domain checked: MAIL FROM's, or HELO's for the null sender
    identity: str  # "mailfrom" or "helo" (RFC 7208 section 2.3/2.4)
    explanation: str = ""


def _client_ip(address: str) -> str:
    a = address.strip().strip("[]")
    if a.lower().startswith("ipv6:"):
        a = a[5:]
    try:
        return str(ipaddress.ip_address(a))
    except ValueError:
        return ""


def check(client_address: str, sender: str, helo: str, resolver: Resolver) -> SPFResult:
    """SPF for MAIL FROM ``sender``, or for HELO ``helo`` when the sender is null.

    RFC 7208 section 2.4: for the null reverse-path the identity is
    ``postmaster@<HELO name>``.
    """
    helo = helo.strip().rstrip(".").lower()
    identity = "mailfrom" if sender else "helo"
    domain = sender.rpartition("@")[2].strip().rstrip(".").lower() if sender else helo
    ip = _client_ip(client_address)
    if not ip:
        return SPFResult("none", domain, identity, "no client address")
    if not domain or domain.startswith("[") or "." not in domain:
        # An address literal or a bare word as HELO: nothing can be published for it.
        return SPFResult("none", domain, identity, f"no domain to check ({identity})")
    _local.resolver = resolver
    try:
        q = pyspf.query(i=ip, s=sender, h=helo or domain, timeout=resolver.timeout, querytime=min(MAX_SECONDS, 4 * resolver.timeout))
        result, _code, explanation = q.check()
    except Exception as e:  # pyspf handles SPF's own errors; this is anything else
        return SPFResult("temperror", domain, identity, f"pyspf: {type(e).__name__}: {e}"[:200])
    finally:
        _local.resolver = None
    if result not in ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"):
        result = "permerror" if result in ("unknown", "ambiguous") else "temperror"
    return SPFResult(result, domain, identity, str(explanation or ""))
