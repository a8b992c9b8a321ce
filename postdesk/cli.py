"""The ``postdesk`` console script: every subcommand, one parser.

Exit statuses are sysexits(3), because Postfix pipe(8) and systemd read them:
0 done, 64 usage, 65/66 bad or missing data (no such ticket, action or
attachment), 70 internal error, 73 cannot create the output file, 75 try
again later (store locked or unreachable), 78 configuration error.  Never 1:
pipe(8) bounces a message on 1, and a plain 1 also hides what went wrong.

Imports are lazy, per subcommand: ``postdesk filter`` runs once per message
under pipe(8) and must not pay for pymilter or Alembic, and the admin
commands should not either.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from postdesk.outcomes import (
    EX_DATAERR,
    EX_NOINPUT,
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_USAGE,
)

EX_CANTCREAT = 73
EX_CONFIG = 78


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; sysexits says 64 (EX_USAGE).

    Except for ``postdesk filter``: its command line comes from master.cf,
    and pipe(8) bounces the message on any exit status but 75.  A typo in
    master.cf must not bounce support mail, so there a usage error defers
    (75, with a 4.3.5 status line first, which pipe(8) reads) until the
    admin fixes the transport.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        if self.prog.split()[-1:] == ["filter"]:
            self.exit(EX_TEMPFAIL, f"4.3.5 {self.prog}: {message} (check the pipe(8) command in master.cf)\n")
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


class CommandError(Exception):
    """A failure the user can act on: message for stderr, sysexits code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _now() -> datetime:
    """Naive UTC, as the store keeps it; read here, at the edge, and passed in."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


# --- output helpers -----------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO 8601, paths and others as strings."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _print_json(obj: Any) -> None:
    import json

    json.dump(_plain(obj), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T" and value[4:5] == "-":
        return value[:19].replace("T", " ")  # an ISO timestamp from the store
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(sorted(str(v) for v in value)) or "-"
    text = str(value)
    # One row per record: a stray CR/LF or control char would break the table.
    return "".join(c if c.isprintable() else " " for c in text)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = []
    for row in [list(headers), *cells]:
        line = "  ".join(c.ljust(widths[i]) for i, c in enumerate(row))
        lines.append(line.rstrip())
    return "\n".join(lines)


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if sep and at and ":" in creds:
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


# --- store access -------------------------------------------------------------


def _store(config):
    from postdesk.store import Store

    return Store.from_config(config)


def _ticket_or_fail(store, number: int) -> dict:
    ticket = store.show_ticket(number)
    if ticket is None:  # show_ticket answers None for a missing ticket
        raise LookupError(f"no ticket {number}")
    return ticket


# --- subcommands ----------------------------------------------------------------


def cmd_init(args, config) -> int:
    import logging

    # Alembic logs its plugin set-up at INFO; one line of ours says the result.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    store = _store(config)
    store.init(config.organization.first_ticket_number)
    print(f"postdesk: database {_redact(config.store.url)} is at the newest schema; attachments in {config.store.attachments}")
    return EX_OK


def cmd_milter(args, config) -> int:
    from postdesk import milter

    return milter.run(config)


def cmd_notifier(args, config) -> int:
    from postdesk import notifier

    return notifier.run(config, once=args.once)


def cmd_check(args, config) -> int:
    from postdesk import check

    return check.run(config)


TICKET_LIST_COLUMNS = ("number", "status", "visible", "requester", "created", "subject")


def cmd_ticket_list(args, config) -> int:
    tickets = _store(config).list_tickets(args.status)
    if args.json:
        _print_json([{k: v for k, v in t.items() if k != "actions"} for t in tickets])
        return EX_OK
    if not tickets:
        print("no tickets" if not args.status else f"no {args.status} tickets")
        return EX_OK
    rows = [
        (
            f"{config.organization.tag}{t.get('number')}",
            t.get("status"),
            "customers" if t.get("visible_to_customers") else "internal",
            t.get("requester"),
            t.get("created_at"),
            t.get("subject"),
        )
        for t in tickets
    ]
    print(_table(TICKET_LIST_COLUMNS, rows))
    return EX_OK


def _indent(text: str, prefix: str = "    ") -> str:
    lines = (text or "").rstrip("\n").splitlines() or ["(no text)"]
    return "\n".join(prefix + "".join(c if c.isprintable() or c == "\t" else " " for c in line) for line in lines)


def cmd_ticket_show(args, config) -> int:
    ticket = _ticket_or_fail(_store(config), args.number)
    if args.json:
        _print_json(ticket)
        return EX_OK
    tag = config.organization.tag
    out = [
        f"ticket [{tag}{ticket.get('number')}] {_cell(ticket.get('subject'))}",
        f"  status:     {_cell(ticket.get('status'))}",
        f"  visible to: {'customers' if ticket.get('visible_to_customers') else 'staff only (internal)'}",
        f"  requester:  {_cell(ticket.get('requester'))}",
        f"  created:    {_cell(ticket.get('created_at'))}",
    ]
    actions = ticket.get("actions") or []
    if not actions:
        out.append("")
        out.append("no actions")
    for a in actions:
        out.append("")
        head = [
            f"action {a.get('id')}",
            _cell(a.get("created_at")) if a.get("created_at") else "",
            _cell(a.get("author")),
            "public" if a.get("public") else "private",
        ]
        if a.get("kind") and a.get("kind") != "message":  # status changes and the like
            head.append(f"kind={_cell(a.get('kind'))}")
        if a.get("flags"):
            head.append(f"flags={_cell(a.get('flags'))}")
        out.append("  ".join(h for h in head if h))
        if a.get("message_id"):
            out.append(f"  message-id: <{_cell(a.get('message_id'))}>")
        for att in a.get("attachments") or []:
            out.append(
                f"  attachment {att.get('id')}: {_cell(att.get('filename'))} "
                f"({_cell(att.get('content_type'))}, {att.get('size')} bytes, sha256 {str(att.get('sha256'))[:16]}...)"
            )
        out.append(_indent(a.get("text") or ""))
    print("\n".join(out))
    return EX_OK


def cmd_ticket_status(args, config) -> int:
    store = _store(config)
    changed = store.set_status(args.number, args.status, config, _now())
    if changed:
        print(f"ticket {args.number}: status {args.status}")
    else:
        print(f"ticket {args.number}: already {args.status}")
    return EX_OK


def cmd_ticket_visibility(args, config) -> int:
    store = _store(config)
    visible = args.visibility == "customers"
    changed = store.set_visibility(args.number, visible, config, _now())
    what = "visible to customers" if visible else "internal (staff only)"
    if changed is False:
        print(f"ticket {args.number}: already {what}")
    else:
        print(f"ticket {args.number}: {what}")
    return EX_OK


def cmd_action_toggle(args, config) -> int:
    public = _store(config).toggle_action(args.id, config, _now())
    print(f"action {args.id}: now {'public' if public else 'private'}")
    return EX_OK


def cmd_attachment_get(args, config) -> int:
    import hashlib
    import tempfile

    meta, path = _store(config).attachment(args.id)
    try:
        src = open(path, "rb")
    except FileNotFoundError:
        raise CommandError(f"attachment {args.id}: stored file {path} is missing", EX_NOINPUT) from None
    except OSError as e:
        raise CommandError(f"attachment {args.id}: cannot read {path}: {e.strerror}", EX_NOINPUT) from None
    digest = hashlib.sha256()
    expected = str(meta.get("sha256") or "")
    with src:
        if args.output == "-":
            out = sys.stdout.buffer
            for chunk in iter(lambda: src.read(1 << 16), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
        else:
            # Write beside the target, then rename: no half-written file on error.
            target = os.path.abspath(args.output)
            try:
                fd, tmp = tempfile.mkstemp(prefix=".postdesk-", dir=os.path.dirname(target))
            except OSError as e:
                raise CommandError(f"cannot create {args.output}: {e.strerror}", EX_CANTCREAT) from None
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in iter(lambda: src.read(1 << 16), b""):
                        digest.update(chunk)
                        out.write(chunk)
                if expected and digest.hexdigest() != expected:
                    raise CommandError(f"attachment {args.id}: stored file {path} does not match its sha256", EX_DATAERR)
                os.chmod(tmp, 0o644 & ~_umask())
                os.replace(tmp, target)
            except OSError as e:
                raise CommandError(f"cannot write {args.output}: {e.strerror}", EX_CANTCREAT) from None
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            print(f"attachment {args.id}: {meta.get('filename') or '(no name)'}, {meta.get('size')} bytes -> {args.output}", file=sys.stderr)
    if expected and digest.hexdigest() != expected and args.output == "-":
        raise CommandError(f"attachment {args.id}: stored file {path} does not match its sha256", EX_DATAERR)
    return EX_OK


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


OUTBOX_COLUMNS = ("id", "kind", "state", "ticket", "recipient", "due_at", "attempts", "sent_at", "last_error")


def _short(value: Any, width: int = 60) -> Any:
    if isinstance(value, str) and len(value) > width:
        return value[: width - 3] + "..."
    return value


def cmd_outbox_list(args, config) -> int:
    rows = _store(config).list_outbox()
    if args.json:
        _print_json(rows)
        return EX_OK
    if not rows:
        print("outbox empty")
        return EX_OK
    # The table keeps to what a person scans for; --json has every field.
    present = set().union(*(r.keys() for r in rows))
    columns = [c for c in OUTBOX_COLUMNS if c in present]
    print(_table(columns, [[_short(r.get(c)) for c in columns] for r in rows]))
    return EX_OK


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (sasl_map)
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(str(value), ensure_ascii=False)


def cmd_config_show(args, config) -> int:
    from postdesk.config import SCHEMA

    out = [f"# postdesk effective configuration (from {config.source}; defaults filled in)"]
    for section, values in config.as_dict().items():
        out.append("")
        out.append(f"[{section}]")
        for key, value in values.items():
            help_text = SCHEMA[section][key][2]
            out.append(f"{key} = {_toml_value(value)}  # {help_text}")
    print("\n".join(out))
    return EX_OK


# --- the parser -------------------------------------------------------------------


def build_parser() -> Parser:
    common = Parser(add_help=False)
    # Also accepted after the subcommand; SUPPRESS keeps the global value then.
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")

    parser = Parser(
        prog="postdesk",
        description="An email help desk inside Postfix.",
        epilog="Configuration: --config FILE, else $POSTDESK_CONFIG, else /etc/postdesk/postdesk.toml.",
    )
    parser.add_argument("--config", metavar="FILE", default=None, help="configuration file (default: $POSTDESK_CONFIG or /etc/postdesk/postdesk.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(parent, name: str, handler: Callable | None, help_text: str, **kw) -> Parser:
        p = parent.add_parser(name, help=help_text, description=help_text, parents=[common], **kw)
        if handler is not None:
            p.set_defaults(handler=handler)
        return p

    add(sub, "init", cmd_init, "create or upgrade the database, create the attachment directory")
    add(sub, "milter", cmd_milter, "run the milter on [milter] socket")

    p = add(sub, "filter", None, "read one message on stdin (Postfix pipe(8)); exit 0, 75 or a sysexits code")
    p.add_argument("--sender", required=True, help="envelope sender (${sender}); empty or <> for the null sender")
    p.add_argument(
        "--recipient",
        dest="recipients",
        required=True,
        action="extend",
        nargs="+",
        metavar="R",
        help="envelope recipient (${recipient}); repeat, or several after one flag as pipe(8) expands them",
    )
    p.add_argument("--queue-id", default="", help="Postfix queue id (${queue_id})")
    p.add_argument("--client-address", default="", help="SMTP client IP (${client_address})")
    p.add_argument("--sasl-username", default="", help="SASL login (${sasl_username})")
    p.add_argument("--helo-name", default="", help="the client's HELO/EHLO name (${client_helo}), for SPF")
    p.set_defaults(handler=None, filter=True)

    p = add(sub, "notifier", cmd_notifier, "run the notification worker")
    p.add_argument("--once", action="store_true", help="one pass: send what is due, then exit")

    ticket = add(sub, "ticket", None, "list, show and change tickets")
    tsub = ticket.add_subparsers(dest="ticket_command", metavar="SUBCOMMAND", required=True)
    p = add(tsub, "list", cmd_ticket_list, "list tickets")
    p.add_argument("--status", choices=("open", "closed"), help="only tickets with this status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add(tsub, "show", cmd_ticket_show, "one ticket with its actions and attachments")
    p.add_argument("number", type=int, metavar="N")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add(tsub, "status", cmd_ticket_status, "open or close a ticket (queues the status mail when enabled)")
    p.add_argument("number", type=int, metavar="N")
    p.add_argument("status", choices=("open", "closed"))
    p = add(tsub, "visibility", cmd_ticket_visibility, "whether customers get mail about the ticket")
    p.add_argument("number", type=int, metavar="N")
    p.add_argument("visibility", choices=("customers", "internal"))

    action = add(sub, "action", None, "change actions")
    asub = action.add_subparsers(dest="action_command", metavar="SUBCOMMAND", required=True)
    p = add(asub, "toggle", cmd_action_toggle, "flip an action private <-> public")
    p.add_argument("id", type=int, metavar="ID")

    attachment = add(sub, "attachment", None, "fetch attachments")
    atsub = attachment.add_subparsers(dest="attachment_command", metavar="SUBCOMMAND", required=True)
    p = add(atsub, "get", cmd_attachment_get, "write an attachment's bytes to FILE (- for stdout)")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("-o", "--output", required=True, metavar="FILE")

    outbox = add(sub, "outbox", None, "the notifications queue")
    osub = outbox.add_subparsers(dest="outbox_command", metavar="SUBCOMMAND", required=True)
    p = add(osub, "list", cmd_outbox_list, "queued, sent and failed notifications")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    cfg = add(sub, "config", None, "the configuration")
    csub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    add(csub, "show", cmd_config_show, "print the effective configuration (TOML)")

    add(sub, "check", cmd_check, "check the configuration, database, Postfix settings and DNS")
    return parser


def _exit_status(rc: Any) -> int:
    """A part returning None/True means success; 1 is never let through."""
    if rc is None or rc is True:
        return EX_OK
    if rc is False:
        return EX_SOFTWARE
    if not isinstance(rc, int) or not 0 <= rc <= 255 or rc == 1:
        print(f"postdesk: internal error: exit status {rc!r} replaced by {EX_SOFTWARE}", file=sys.stderr)
        return EX_SOFTWARE
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (64), from Parser
        return e.code if isinstance(e.code, int) and e.code != 1 else EX_USAGE

    if getattr(args, "filter", False):
        from postdesk import pipe

        return _exit_status(pipe.run(args, args.config))

    from postdesk import config as configmod
    from postdesk import logsetup

    logsetup.setup(args.command)
    try:
        config = configmod.load(args.config)
    except configmod.ConfigError as e:
        where = configmod.default_path(args.config)
        detail = str(e) if str(where) in str(e) else f"{e} (in {where})"
        print(f"postdesk: configuration error: {detail}", file=sys.stderr)
        return EX_CONFIG
    logsetup.set_level(config.log.level)

    try:
        return _exit_status(args.handler(args, config))
    except CommandError as e:
        print(f"postdesk: {e}", file=sys.stderr)
        return e.code
    except configmod.ConfigError as e:
        print(f"postdesk: configuration error: {e}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130  # 128 + SIGINT, as a shell reports it
    except BrokenPipeError:
        # `postdesk ticket list | head`: the reader is gone; not an error.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EX_OK
    except Exception as e:
        store = sys.modules.get("postdesk.store")
        unavailable = getattr(store, "StoreUnavailable", None) if store else None
        if unavailable is not None and isinstance(e, unavailable):
            print(f"postdesk: store unavailable, try again later: {e}", file=sys.stderr)
            return EX_TEMPFAIL
        if isinstance(e, LookupError) and not isinstance(e, (KeyError, IndexError)):
            print(f"postdesk: {_lookup_message(e)}", file=sys.stderr)
            return EX_NOINPUT
        import logging

        logging.getLogger("postdesk").exception("%s: unexpected error: %s", args.command, e)
        return EX_SOFTWARE


def _lookup_message(e: LookupError) -> str:
    return str(e.args[0]) if e.args else "not found"


if __name__ == "__main__":
    sys.exit(main())
