"""Rule "recipients": mail not addressed to a system address.

Postfix hands the milter every message; only mail with a system address
among the envelope recipients is ours.  One exception is recorded: trusted
staff, logged in with SASL, writing straight to a customer with the tag of
an existing ticket in the subject (so the history stays complete and the
customer's reply threads).  That action is flagged ``direct``, and the
people who got it directly (envelope recipients, To, Cc) are not mailed it
again.  Everything else is ignored.

The department of the message is decided here too: the first
``[[departments]]`` table (in config order) holding one of the envelope
recipients, else the default (``Config.department_for``); a new ticket
belongs to it.
"""

from __future__ import annotations

from postdesk.filter import headers as hdr
from postdesk.filter import thread as threadmod
from postdesk.filter.decision import Decision, Kind
from postdesk.filter.draft import Draft, not_ours


def apply(d: Draft) -> Decision | None:
    config, envelope = d.config, d.envelope
    d.cc = not_ours(d.headers.to_cc, config)
    recipients = [hdr.clean_address(r) for r in envelope.recipients]
    if any(config.is_system_address(r) for r in recipients):
        d.department = config.department_for(recipients).name
        return None
    number = threadmod.find_tag(d.headers.original_subject, config.organization.tag)
    if not (d.trust.staff and d.trust.sasl and number is not None and d.known.ticket(number) is not None):
        return d.stop(Kind.IGNORE, "no system address")
    d.flags.add("direct")
    d.cc = not_ours(list(envelope.recipients) + list(d.headers.to_cc), config)
    return None
