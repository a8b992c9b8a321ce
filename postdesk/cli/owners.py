"""``postdesk ticket assign N ADDRESS|none``: who owns a ticket.

The owner hears of the customer's replies (``[lifecycle] owner_alerts``,
README "Owners").  Only staff (``[organization] staff``) can own a ticket:
any other address is refused with exit 65 (EX_DATAERR) and nothing changes.
``none`` leaves the ticket without an owner; its alerts go to the team again.
"""

from __future__ import annotations

from postdesk.cli.common import open_store
from postdesk.cli.errors import CommandError
from postdesk.clock import utcnow as now  # read here, at the edge, and passed in
from postdesk.filter.headers import clean_address
from postdesk.outcomes import EX_DATAERR, EX_OK


def owner_address(value: str, config) -> str | None:
    """The staff address ``value`` names, or None for ``none``."""
    if value.strip().lower() == "none":
        return None
    address = clean_address(value)
    if not address or "@" not in address:
        raise CommandError(f"{value!r} is not an address (give a staff address, or none)", EX_DATAERR)
    if not config.matches_staff(address):
        staff = ", ".join(config.organization.staff) or "nobody"
        raise CommandError(f"{address} is not staff ([organization] staff: {staff}); only staff can own a ticket", EX_DATAERR)
    if config.is_own_address(address):
        raise CommandError(f"{address} is one of the desk's own addresses, not a person", EX_DATAERR)
    return address


def cmd_assign(args, config) -> int:
    address = owner_address(args.owner, config)
    changed = open_store(config).assign(args.number, address, config, now())
    who = address or "nobody"
    print(f"ticket {args.number}: {'owner now' if changed else 'already owned by'} {who}")
    return EX_OK
