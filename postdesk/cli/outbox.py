"""``postdesk outbox list``: queued, sent and failed notifications."""

from __future__ import annotations

from postdesk.cli import render
from postdesk.cli.common import open_store
from postdesk.outcomes import EX_OK

OUTBOX_COLUMNS = ("id", "kind", "state", "ticket", "recipient", "due_at", "attempts", "sent_at", "last_error")


def cmd_list(args, config) -> int:
    rows = open_store(config).list_outbox()
    if args.json:
        render.print_json(rows)
        return EX_OK
    if not rows:
        print("outbox empty")
        return EX_OK
    # The table keeps to what a person scans for; --json has every field.
    present = set().union(*(r.keys() for r in rows))
    columns = [c for c in OUTBOX_COLUMNS if c in present]
    print(render.table(columns, [[render.short(r.get(c)) for c in columns] for r in rows]))
    return EX_OK
