"""Rule "trust": is the author staff?

A From: address is only a claim.  The author is staff when the address
matches ``[organization] staff`` *and* the message proves it:

- a SASL login (Postfix ``${sasl_username}``, milter ``{auth_authen}``)
  equal to the address, mapped to it by ``[trust] sasl_map``, or equal to
  its local part when the address is in ``[trust] sasl_login_domain``
  (login ``bob`` is ``bob@<that domain>``); a login is never matched by the
  local part alone, or login ``bob`` at any domain would be staff
  ``bob@example.com``;
- a client in ``[trust] trusted_networks`` (empty by default);
- with ``[trust] staff_dmarc``, an authenticated From: (DMARC pass, or an
  SPF/DKIM pass aligned with From:; ``postdesk.auth``).

An address that matches ``staff`` without proof is flagged ``untrusted``:
its mail is kept, private, and its commands are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from postdesk.auth.result import AuthResult
from postdesk.config import Config
from postdesk.filter.decision import Decision, Envelope
from postdesk.filter.draft import Draft


@dataclass(frozen=True)
class Trust:
    claims_staff: bool  # the address matches [organization] staff
    staff: bool  # ... and the message proves it (trusted staff)
    sasl: bool  # the proof is a SASL login that maps to the author

    @property
    def untrusted(self) -> bool:
        return self.claims_staff and not self.staff


def sasl_maps_to(login: str, author: str, config: Config) -> bool:
    """The SASL ``login`` is the mailbox ``author`` (see the module docstring)."""
    login = (login or "").strip().lower()
    author = (author or "").strip().lower()
    if not login or not author:
        return False
    if login == author:
        return True
    mapped = config.trust.sasl_map.get(login)
    if mapped:
        return mapped.lower() == author
    domain = config.trust.sasl_login_domain
    return bool(domain) and "@" not in login and author == f"{login}@{domain}"


def staff_proof(author: str, envelope: Envelope, config: Config, auth: AuthResult) -> Trust:
    claims = bool(author) and config.matches_staff(author)
    if not claims:
        return Trust(False, False, False)
    sasl = sasl_maps_to(envelope.sasl_username, author, config)
    network = config.is_trusted_client(envelope.client_address)
    dmarc = bool(config.trust.staff_dmarc) and auth.verified
    return Trust(True, sasl or network or dmarc, sasl)


def apply(d: Draft) -> Decision | None:
    tr = d.trust
    d.staff = tr.staff
    if tr.staff:
        d.flags.add("staff")
    elif tr.untrusted:
        d.flags.add("untrusted")
        d.public = False
    return None
