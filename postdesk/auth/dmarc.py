"""DMARC (RFC 7489): does an SPF or DKIM pass belong to the From: domain?

- The policy record is the TXT at ``_dmarc.<From domain>``, else at
  ``_dmarc.<organisational domain>`` (section 6.6.3); the organisational
  domain is the public suffix plus one label (section 3.2,
  ``postdesk.auth.domains``).  A record found at the organisational domain applies its
  ``sp=`` to subdomains, when given.
- Alignment (section 3.1): relaxed (the default) means the same
  organisational domain, strict (``adkim=s`` / ``aspf=s``) the same domain.
- pass: an SPF pass for an aligned MAIL FROM (or HELO) domain, or a DKIM pass
  with an aligned ``d=``; fail: a policy exists and neither aligns; none: no
  policy is published; temperror: the policy lookup failed.

The policy (``p=``) is recorded, never enforced: postdesk does not reject
mail, it records who wrote it (the filter decides what an unauthenticated
customer may do).
"""

from __future__ import annotations

from dataclasses import dataclass

from postdesk.auth.dns import DNSTempError, Resolver
from postdesk.auth.domains import aligned, organisational_domain

POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True)
class Policy:
    domain: str  # where the record was found
    p: str  # the policy that applies to the From domain (p=, or sp= for a subdomain)
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


def parse_record(text: str) -> dict[str, str] | None:
    """Tags of a DMARC record, or None when it is not one (must start ``v=DMARC1``)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq:
            tags.setdefault(key.strip().lower(), value.strip())
    first = text.strip().split(";", 1)[0].replace(" ", "")
    if first != "v=DMARC1":
        return None
    return tags


def _record_at(domain: str, resolver: Resolver) -> dict[str, str] | None:
    records = []
    for raw in resolver.txt(f"_dmarc.{domain}"):
        tags = parse_record(raw.decode("utf-8", "replace"))
        if tags is not None:
            records.append(tags)
    # Section 6.6.3: more than one DMARC record means no policy.
    return records[0] if len(records) == 1 else None


def _policy(tags: dict[str, str], found_at: str, from_domain: str) -> Policy | None:
    p = tags.get("p", "").lower()
    if p not in POLICIES:
        # Section 6.6.3: a record without a valid p= counts as p=none when
        # it asks for reports, and is ignored otherwise.
        if not tags.get("rua"):
            return None
        p = "none"
    if found_at != from_domain and tags.get("sp", "").lower() in POLICIES:
        p = tags["sp"].lower()
    adkim = tags.get("adkim", "r").lower()
    aspf = tags.get("aspf", "r").lower()
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return Policy(found_at, p, adkim if adkim in ("r", "s") else "r", aspf if aspf in ("r", "s") else "r", pct)


def lookup_policy(from_domain: str, resolver: Resolver) -> Policy | None:
    """The policy for ``from_domain``; raises DNSTempError when DNS failed."""
    from_domain = from_domain.strip().rstrip(".").lower()
    tags = _record_at(from_domain, resolver)
    if tags is not None:
        return _policy(tags, from_domain, from_domain)
    org = organisational_domain(from_domain)
    if org and org != from_domain:
        tags = _record_at(org, resolver)
        if tags is not None:
            return _policy(tags, org, from_domain)
    return None


@dataclass(frozen=True)
class DMARCResult:
    result: str  # pass fail none temperror
    policy: Policy | None
    spf_aligned: bool
    dkim_aligned: bool
    reason: str = ""


def evaluate(from_domain: str, spf_result: str, spf_domain: str, dkim_domains: tuple[str, ...], resolver: Resolver) -> DMARCResult:
    """DMARC for the From: domain given the SPF and DKIM outcomes."""
    if not from_domain:
        return DMARCResult("none", None, False, False, "no single From: domain")
    try:
        policy = lookup_policy(from_domain, resolver)
    except DNSTempError as e:
        # Alignment is still known (relaxed), only the policy is not.
        return DMARCResult("temperror", None, _spf_aligned(spf_result, spf_domain, from_domain, "r"), _dkim_aligned(dkim_domains, from_domain, "r"), f"dmarc: {e}")
    if policy is None:
        return DMARCResult("none", None, _spf_aligned(spf_result, spf_domain, from_domain, "r"), _dkim_aligned(dkim_domains, from_domain, "r"))
    spf_ok = _spf_aligned(spf_result, spf_domain, from_domain, policy.aspf)
    dkim_ok = _dkim_aligned(dkim_domains, from_domain, policy.adkim)
    return DMARCResult("pass" if spf_ok or dkim_ok else "fail", policy, spf_ok, dkim_ok)


def _spf_aligned(spf_result: str, spf_domain: str, from_domain: str, mode: str) -> bool:
    return spf_result == "pass" and aligned(spf_domain, from_domain, mode)


def _dkim_aligned(dkim_domains: tuple[str, ...], from_domain: str, mode: str) -> bool:
    return any(aligned(d, from_domain, mode) for d in dkim_domains)
