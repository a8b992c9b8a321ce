"""Rule "identity": is the author who the From: header says?

``postdesk.auth`` gives the verdict (SPF, DKIM, DMARC; ``Draft.auth``).
Staff proven by SASL, a trusted network or ``staff_dmarc`` (rule "trust")
are who they claim and are left alone.  For everyone else:

- *refuted* (SPF fail, DMARC fail, or an envelope sender of another
  organisational domain with no aligned DKIM pass), flag ``forged``: the
  mail is recorded, privately, so staff can see the attempt in ``ticket
  show``; its To/Cc join nobody, it never renames a person (the store reads
  this flag), and nothing is mailed because of it: no acknowledgement, no
  team alert (an alert per forged mail would let anyone flood the team), no
  customer update.
- *unverifiable* (none, temperror, permerror, neutral, softfail, when the
  mail was checked at all), flag ``unverified``: handled as before, but
  staff can see that nothing vouched for the sender.  Mail that was not
  checked (``[trust] verify = false``) carries no flag.
"""

from __future__ import annotations

from postdesk.filter.decision import Decision
from postdesk.filter.draft import Draft


def apply(d: Draft) -> Decision | None:
    if d.staff:
        return None
    if d.auth.refuted:
        d.flags.add("forged")
        d.public, d.notify_team, d.send_ack = False, False, False
    elif not d.auth.verified and d.auth.source != "none":
        d.flags.add("unverified")
    return None
