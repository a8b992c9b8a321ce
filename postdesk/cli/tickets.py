"""``postdesk ticket ...`` and ``postdesk action toggle``: read and change tickets."""

from __future__ import annotations

import sys

from postdesk.cli import render
from postdesk.cli.common import open_store
from postdesk.cli.errors import CommandError
from postdesk.clock import utcnow as now  # read here, at the edge, and passed in
from postdesk.outcomes import EX_DATAERR, EX_OK, EX_USAGE

TICKET_LIST_COLUMNS = ("number", "status", "visible", "owner", "requester", "created", "subject")


def ticket_or_fail(store, number: int) -> dict:
    ticket = store.show_ticket(number)
    if ticket is None:  # show_ticket answers None for a missing ticket
        raise LookupError(f"no ticket {number}")
    return ticket


def department_name(config, name: str | None) -> str | None:
    """``--department NAME``: a configured [[departments]] name (any case),
    as stored on tickets; an unknown one is a usage error naming the known."""
    if name is None:
        return None
    for d in config.departments:
        if d.name.lower() == name.strip().lower():
            return d.name
    known = ", ".join(d.name for d in config.departments) or "none configured"
    raise CommandError(f"no department {name!r} (known: {known})", EX_USAGE)


def cmd_list(args, config) -> int:
    department = department_name(config, getattr(args, "department", None))
    limit = args.limit or None  # 0: everything, as before paging
    # One more than the page: whether there is a next page, without counting.
    tickets = open_store(config).list_tickets(args.status, department, after=args.after, limit=None if limit is None else limit + 1)
    if limit is not None and len(tickets) > limit:
        tickets = tickets[:limit]
        more = ["postdesk", "ticket", "list"] + (["--status", args.status] if args.status else []) + (["--department", department] if department else [])
        more += (["--json"] if args.json else []) + ([f"--limit={limit}"] if limit != 50 else []) + [f"--after={tickets[-1]['number']}"]
        # stderr: stdout stays the page alone (a JSON list, a table).
        print(f"more tickets: {' '.join(more)}", file=sys.stderr)
    if args.json:
        render.print_json([{k: v for k, v in t.items() if k != "actions"} for t in tickets])
        return EX_OK
    if not tickets:
        what = " ".join(w for w in (args.status, f"{department}" if department else None) if w)
        print(f"no {what} tickets" if what else "no tickets")
        return EX_OK
    columns: tuple[str, ...] = TICKET_LIST_COLUMNS
    if config.departments:
        columns = columns[:3] + ("department",) + columns[3:]
    rows = []
    for t in tickets:
        row = [
            f"{config.organization.tag}{t.get('number')}",
            t.get("status"),
            "customers" if t.get("visible_to_customers") else "internal",
            t.get("owner"),
            t.get("requester"),
            t.get("created_at"),
            t.get("subject"),
        ]
        if config.departments:
            row.insert(3, t.get("department") or "(default)")
        rows.append(row)
    print(render.table(columns, rows))
    return EX_OK


def cmd_show(args, config) -> int:
    store = open_store(config)
    ticket = ticket_or_fail(store, args.number)
    if args.json:
        render.print_json(ticket)
    elif getattr(args, "html", False):
        from postdesk.cli.htmlpage import ticket_page
        from postdesk.store.blobs import BlobError

        def read(attachment_id: int) -> bytes | None:
            try:
                _meta, blob = store.attachment(attachment_id)
                return blob.read()  # checked against its sha256 as it is read
            except (LookupError, BlobError, OSError):
                return None  # missing or corrupt bytes show as a missing image, not an error page

        sys.stdout.write(ticket_page(ticket, config.organization.tag, read))
    else:
        print(render.ticket_text(ticket, config.organization.tag))
    return EX_OK


def cmd_status(args, config) -> int:
    changed = open_store(config).set_status(args.number, args.status, config, now())
    print(f"ticket {args.number}: {'status' if changed else 'already'} {args.status}")
    return EX_OK


def cmd_merge(args, config) -> int:
    from postdesk.store.merge import MergeRefused

    try:
        into = open_store(config).merge_tickets(args.source, args.into, config, now())
    except MergeRefused as e:
        raise CommandError(f"postdesk: ticket {args.source} not merged: {e}", EX_DATAERR) from None
    chain = f" (ticket {args.into} was merged into {into})" if into != args.into else ""
    print(f"ticket {args.source}: merged into {into}{chain}")
    return EX_OK


def cmd_visibility(args, config) -> int:
    visible = args.visibility == "customers"
    changed = open_store(config).set_visibility(args.number, visible, config, now())
    what = "visible to customers" if visible else "internal (staff only)"
    print(f"ticket {args.number}: {'already ' if changed is False else ''}{what}")
    return EX_OK


def cmd_action_toggle(args, config) -> int:
    public = open_store(config).toggle_action(args.id, config, now())
    print(f"action {args.id}: now {'public' if public else 'private'}")
    return EX_OK
