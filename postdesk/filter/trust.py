"""Step: is the author trusted staff?  (docs/filter.md rule 7)

A From: address is only a claim.  Staff commands and public staff replies
need proof: a SASL login (Postfix ``${sasl_username}``, milter
``{auth_authen}``) that maps to the author -- equal to the address or to its
local part -- or a client in ``[trust] trusted_networks``.  An address that
matches ``staff`` without that proof is "untrusted": its mail is kept, but
private, flagged, and its commands are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from postdesk.config import Config
from postdesk.filter.decision import Envelope


@dataclass(frozen=True)
class Trust:
    claims_staff: bool  # the address matches [organization] staff
    staff: bool  # ... and the message proves it (trusted staff)
    sasl: bool  # the proof is a SASL login that maps to the author

    @property
    def untrusted(self) -> bool:
        return self.claims_staff and not self.staff


def sasl_maps_to(login: str, author: str) -> bool:
    login = (login or "").strip().lower()
    if not login or not author:
        return False
    return login == author or login == author.rpartition("@")[0]


def trust(author: str, envelope: Envelope, config: Config) -> Trust:
    claims = bool(author) and config.matches_staff(author)
    if not claims:
        return Trust(False, False, False)
    sasl = sasl_maps_to(envelope.sasl_username, author)
    network = config.is_trusted_client(envelope.client_address)
    return Trust(True, sasl or network, sasl)
