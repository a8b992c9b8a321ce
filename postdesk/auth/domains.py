"""Organisational domains and identifier alignment (RFC 7489 sections 3.1, 3.2).

The organisational domain is the public suffix plus one label
(``mail.shop.co.uk`` -> ``shop.co.uk``), from the public suffix list that
publicsuffixlist bundles (no network).  Both DMARC (``postdesk.auth.dmarc``)
and the filter's acknowledgement rule (``postdesk.filter.rules.ack``: is the
envelope sender of From:'s organisation?) decide by it, so it lives here,
pure and importing nothing but publicsuffixlist: the filter does not pull in
the DNS checkers through it.  The list is loaded on first use (about 0.1 s),
not on import.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

_psl: PublicSuffixList | None = None
_psl_lock = threading.Lock()


def _list() -> PublicSuffixList:
    global _psl
    if _psl is None:
        with _psl_lock:
            if _psl is None:
                from publicsuffixlist import PublicSuffixList

                _psl = PublicSuffixList()  # the list bundled with the package: no network
    return _psl


@lru_cache(maxsize=1024)
def organisational_domain(domain: str) -> str:
    """RFC 7489 section 3.2: the registrable domain (``a.b.example.co.uk`` -> ``example.co.uk``).

    A public suffix itself (or an unknown single label) is its own
    organisational domain; so is a name the list cannot split (empty labels).
    """
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        return ""
    try:
        return _list().privatesuffix(domain) or domain
    except Exception:  # publicsuffixlist raises on malformed names; they align only with themselves
        return domain


def aligned(domain: str, from_domain: str, mode: str = "r") -> bool:
    """Identifier alignment (RFC 7489 section 3.1): strict "s" (the same
    domain) or relaxed "r" (the same organisational domain)."""
    a, b = domain.strip().rstrip(".").lower(), from_domain.strip().rstrip(".").lower()
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return a == b or organisational_domain(a) == organisational_domain(b)
