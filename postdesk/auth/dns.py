"""The DNS resolver of sender authentication: bounded in time and memory.

One ``Resolver`` per ``([dns] nameservers, [dns] timeout)``, shared by every
SMTP session of the process (``resolver_for``), built on dnspython:

- ``[dns] nameservers`` ("IP:PORT" / "[v6]:PORT", already normalised by
  ``postdesk.config``) or, when empty, the system resolver (/etc/resolv.conf);
- ``[dns] timeout`` bounds each lookup (dnspython's ``lifetime``: all tries
  and servers together), so a dead resolver costs one timeout per name;
- dnspython's ``LRUCache`` keeps answers for their TTL and at most
  ``CACHE_SIZE`` names (the least recently used go first), so the same
  sender's SPF, DKIM key and DMARC record are asked once per TTL, and a
  flood of random domains cannot grow memory without bound.

Every failure to get an answer (timeout, SERVFAIL, REFUSED, no resolver
configured) raises ``DNSTempError``: SPF, DKIM and DMARC turn it into
``temperror`` (RFC 7208 section 2.6.6, RFC 6376 section 6.1.2, RFC 7489
section 6.6.3), never into a lost or refused message.  A name that does not
exist, or has no record of the type asked, is an empty list: that is an
answer, not an error.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

CACHE_SIZE = 10000  # names kept (LRU), each for at most its TTL
# All lookups for one message together may take this many [dns] timeouts
# (``budget``): a sender who publishes many slow names (SPF includes, DKIM
# selectors, ARC sets) cannot hold the SMTP session, and the milter's
# threads, for minutes.
BUDGET_TIMEOUTS = 4

_budget = threading.local()


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Bound every lookup made in this thread inside the block to one deadline."""
    previous = getattr(_budget, "deadline", None)
    _budget.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _budget.deadline = previous


class DNSTempError(Exception):
    """No answer now (timeout, SERVFAIL, no resolver): a temperror, try later."""


def _nameserver(spec: str) -> dns.nameserver.Do53Nameserver:
    """"IP:PORT" or "[v6]:PORT" (as postdesk.config normalises them)."""
    if spec.startswith("["):
        host, _, port = spec[1:].partition("]:")
    else:
        host, _, port = spec.rpartition(":")
    return dns.nameserver.Do53Nameserver(host, int(port or 53))


class Resolver:
    """Lookups for SPF, DKIM and DMARC with a timeout and a TTL cache."""

    def __init__(self, nameservers: tuple[str, ...] = (), timeout: float = 3.0, cache_size: int = CACHE_SIZE):
        self.nameservers = tuple(nameservers)
        self.timeout = timeout
        self.broken = ""  # why there is no usable resolver (every lookup is a temperror)
        try:
            self._resolver = dns.resolver.Resolver(configure=not self.nameservers)
        except dns.resolver.NoResolverConfiguration as e:
            self._resolver = dns.resolver.Resolver(configure=False)
            self.broken = f"no system resolver: {e}"
        if self.nameservers:
            self._resolver.nameservers = [_nameserver(s) for s in self.nameservers]
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        # SERVFAIL is an answer we report (temperror), not a reason to hammer
        # the server until the lifetime is over.
        self._resolver.retry_servfail = False
        self._resolver.cache = dns.resolver.LRUCache(cache_size)

    def clear_cache(self) -> None:
        """Forget every cached answer (the benchmark's cold runs)."""
        self._resolver.cache.flush()

    def query(self, name: str | bytes, rdtype: str) -> list[Any]:
        """The rdata of ``name``'s ``rdtype`` records; [] when there are none.

        Raises DNSTempError when no answer could be had.
        """
        if self.broken:
            raise DNSTempError(self.broken)
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        try:
            qname = dns.name.from_text(name.rstrip(".") + ".")
        except (dns.exception.DNSException, UnicodeError, ValueError):
            return []  # not a DNS name: nothing is published there
        lifetime = self.timeout
        deadline = getattr(_budget, "deadline", None)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DNSTempError(f"the DNS time for this message is spent; {name} {rdtype} not looked up")
            lifetime = min(lifetime, left)
        try:
            answer = self._resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False, lifetime=lifetime)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
            return []
        except dns.exception.Timeout as e:
            raise DNSTempError(f"timeout after {self.timeout:g}s looking up {name} {rdtype}") from e
        except dns.resolver.NoNameservers as e:
            raise DNSTempError(f"no nameserver answered {name} {rdtype} (SERVFAIL or refused)") from e
        except dns.exception.DNSException as e:
            raise DNSTempError(f"{name} {rdtype}: {type(e).__name__}: {e}") from e
        return list(answer.rrset or ())

    def txt(self, name: str | bytes) -> list[bytes]:
        """Each TXT record of ``name``, its character-strings joined (RFC 7208 3.3)."""
        return [b"".join(r.strings) for r in self.query(name, "TXT")]


_resolvers: dict[tuple[tuple[str, ...], float], Resolver] = {}
_lock = threading.Lock()


def forget(nameserver: str) -> None:
    """Drop the resolvers (and their caches) that ask ``nameserver``.

    For ``postdesk.testing.dns``: a DNS server started on a port an earlier
    one used must not be answered from the earlier one's records.
    """
    with _lock:
        for key in [k for k in _resolvers if nameserver in k[0]]:
            del _resolvers[key]


def resolver_for(config) -> Resolver:
    """The process-wide resolver for ``config``'s [dns] section (one cache)."""
    key = (tuple(config.dns.nameservers), float(config.dns.timeout))
    with _lock:
        resolver = _resolvers.get(key)
        if resolver is None:
            resolver = _resolvers[key] = Resolver(*key)
        return resolver
