"""``postdesk purge`` and ``postdesk person forget``: retention and erasure.

``purge --closed-before DATE|Nd`` removes tickets closed and last updated
before DATE (``YYYY-MM-DD`` or an ISO date and time, UTC) or N days ago,
in batches (postdesk/store/purge.py); ``--dry-run`` counts instead.
``person forget ADDRESS`` erases one person (docs/retention.md).  Each
prints one summary line on stdout; a batch's line goes to the log.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from postdesk.cli.common import open_store
from postdesk.cli.errors import CommandError
from postdesk.clock import utcnow as now  # read here, at the edge, and passed in
from postdesk.outcomes import EX_OK, EX_USAGE

_DAYS = re.compile(r"(\d{1,6})d")


def parse_before(value: str, today: datetime) -> datetime:
    """``2025-01-31`` (midnight UTC), ``2025-01-31T12:00:00`` or ``90d``
    (90 days before ``today``) -> a naive UTC datetime.  Not in the future:
    a mistyped year must not purge every closed ticket."""
    value = value.strip()
    m = _DAYS.fullmatch(value)
    if m:
        return today - timedelta(days=int(m.group(1)))
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--closed-before: {value!r} is neither a date (YYYY-MM-DD) nor a number of days (90d)", EX_USAGE) from None
    if when.tzinfo is not None:
        when = (when - when.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]
    if when > today:
        raise CommandError(f"--closed-before: {value} is in the future", EX_USAGE)
    return when


def cmd_purge(args, config) -> int:
    from postdesk.store import purge

    today = now()
    before = parse_before(args.closed_before, today)
    store = open_store(config)
    when = before.isoformat(sep=" ", timespec="seconds")
    try:
        if args.dry_run:
            counts = purge.count_closed(store, before)
            print(f"purge: closed before {when} UTC: would remove {counts.summary()}")
        else:
            counts = purge.purge_closed(store, before, batch=args.batch)
            print(f"purge: closed before {when} UTC: removed {counts.summary()}")
    finally:
        store.close()
    return EX_OK


def cmd_forget(args, config) -> int:
    from postdesk.store import purge

    if "@" not in args.address:
        raise CommandError(f"{args.address!r} is not an address", EX_USAGE)
    store = open_store(config)
    try:
        done = purge.forget_person(store, args.address, dry_run=args.dry_run)
    finally:
        store.close()
    if not done.found:
        raise LookupError(f"no person {done.address}")
    print(f"forget: {'would erase' if args.dry_run else 'erased'} {done.summary()}")
    if done.purged is not None:
        print(f"forget: their tickets: {'would remove' if args.dry_run else 'removed'} {done.purged.summary()}")
    return EX_OK
