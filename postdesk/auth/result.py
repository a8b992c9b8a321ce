"""The authentication verdict of one message, in RFC 8601 result words.

Plain data, no I/O: the filter's rules read it (``verified``, ``refuted``),
the store records it per action (``as_dict``), ``ticket show --json``
prints it as ``auth``, and the log line carries ``auth=`` (``summary``).

Words (RFC 8601 section 2.7): pass, fail, softfail, neutral, none,
temperror, permerror (and policy for DKIM).  ``none`` means nothing was
published or nothing was signed; ``temperror`` means we could not tell now
(a DNS timeout): such mail is neither authenticated nor refuted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

# Reasons quote what other people's DNS and headers say (an SPF exp= text):
# no line breaks or other controls may reach a log line through them.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]")

NONE = "none"
PASS = "pass"
FAIL = "fail"


@dataclass(frozen=True)
class AuthResult:
    spf: str = NONE  # SPF for MAIL FROM (or HELO for the null sender), RFC 7208
    dkim: str = NONE  # best DKIM result over the signatures, RFC 6376
    dmarc: str = NONE  # DMARC for the From: domain, RFC 7489
    from_domain: str = ""  # the RFC5322.From domain, lower-cased
    spf_domain: str = ""  # the domain SPF checked (MAIL FROM's, else HELO's)
    dkim_domains: tuple[str, ...] = ()  # d= of every signature that passed
    spf_aligned: bool = False  # SPF pass with a domain aligned to From: (relaxed: same organisational domain)
    dkim_aligned: bool = False  # a DKIM pass with d= aligned to From:
    envelope_aligned: bool = True  # MAIL FROM's organisational domain is From:'s (or there is no MAIL FROM)
    source: str = "none"  # "local" (we checked), "authserv-id:<id>" (a trusted upstream header), "none"
    reasons: tuple[str, ...] = field(default=(), compare=False)  # short notes for the log/show
    arc: str = NONE  # the ARC chain (RFC 8617): recorded in our Authentication-Results, decides nothing
    # The domain of the author the desk records (``for_author``): the verdict
    # is about From:'s domain, and it only vouches for an author of that
    # domain.  "" until bound (then nothing is compared).
    author_domain: str = ""

    def __post_init__(self) -> None:
        if self.reasons:
            object.__setattr__(self, "reasons", tuple(_CONTROLS.sub(" ", str(r))[:300] for r in self.reasons))

    def for_author(self, author: str) -> AuthResult:
        """This verdict bound to the author the filter read from the message.

        An author whose domain is not the one DMARC judged (a From: that parses
        two ways, several From: addresses, no From: at all) is not vouched
        for by it: such mail is refuted, whatever the words say."""
        domain = author.rpartition("@")[2].strip().rstrip(".").lower() if "@" in (author or "") else "-"
        return replace(self, author_domain=domain)

    @property
    def _other_author(self) -> bool:
        return bool(self.author_domain) and self.source != "none" and self.author_domain != self.from_domain

    @property
    def verified(self) -> bool:
        """The From: author is authenticated: DMARC pass, or an SPF or DKIM pass aligned with From:."""
        if self._other_author:
            return False
        return self.dmarc == PASS or self.spf_aligned or self.dkim_aligned

    @property
    def refuted(self) -> bool:
        """The mail is not from who it claims: SPF fail, DMARC fail, an
        envelope sender of another organisation with no aligned DKIM pass,
        or an author of another domain than the one judged."""
        if self._other_author:
            return True
        if self.verified:
            return False
        return self.spf == FAIL or self.dmarc == FAIL or not self.envelope_aligned

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``ticket show --json`` field ``auth``)."""
        return {"spf": self.spf, "dkim": self.dkim, "dmarc": self.dmarc, "verified": self.verified}

    def summary(self) -> str:
        """For the log line: ``auth=spf:pass,dkim:none,dmarc:pass``."""
        return f"spf:{self.spf},dkim:{self.dkim},dmarc:{self.dmarc}"


UNCHECKED = AuthResult()
