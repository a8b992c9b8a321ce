"""The ``postdesk`` command line: every subcommand, one parser.

Each subcommand names its handler as ``"module.cmd_name"``: a function of
the module for its group (tickets, attachments, outbox, settings, retention,
services), imported only when that subcommand runs (``handler``), so
``postdesk filter`` (once per message under pipe(8)) pays for none of them,
nor for pymilter or Alembic.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from postdesk.outcomes import EX_TEMPFAIL, EX_USAGE

# postdesk check's steps, in the order they run (postdesk.check imports
# them from here: the parser is built at every start without that module).
CHECK_STEPS = ("templates", "store", "postfix", "socket", "permissions", "dns")


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


def _skip_list(value: str) -> frozenset[str]:
    names = frozenset(v.strip() for v in value.split(",") if v.strip())
    unknown = names - set(CHECK_STEPS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown check {', '.join(sorted(unknown))} (known: {', '.join(CHECK_STEPS)})")
    return names


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {n}")
    return n


def _positive(value: str) -> int:
    n = _count(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def handler(name: str) -> Callable:
    """``"tickets.cmd_list"`` -> postdesk.cli.tickets.cmd_list."""
    import importlib

    module, _, function = name.partition(".")
    return getattr(importlib.import_module(f"postdesk.cli.{module}"), function)


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

    def add(parent, name: str, handler: str | None, help_text: str, **kw) -> Parser:
        p = parent.add_parser(name, help=help_text, description=help_text, parents=[common], **kw)
        if handler is not None:
            p.set_defaults(handler=handler)
        return p

    add(sub, "init", "services.cmd_init", "create or upgrade the database, create the attachment directory")
    add(sub, "milter", "services.cmd_milter", "run the milter on [milter] socket")
    add(sub, "lmtp", "services.cmd_lmtp", "run the LMTP server on [lmtp] listen (after-queue, for Postfix lmtp(8))")

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

    p = add(sub, "notifier", "services.cmd_notifier", "run the notification worker")
    p.add_argument("--once", action="store_true", help="one pass: send what is due, then exit")

    ticket = add(sub, "ticket", None, "list, show and change tickets")
    tsub = ticket.add_subparsers(dest="ticket_command", metavar="SUBCOMMAND", required=True)
    p = add(tsub, "list", "tickets.cmd_list", "list tickets")
    p.add_argument("--status", choices=("open", "pending", "closed"), help="only tickets with this status")
    p.add_argument("--department", metavar="NAME", default=None, help="only tickets of this [[departments]] name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--limit", type=_count, default=50, metavar="N", help="at most N tickets, a page (default: 50; 0: all)")
    p.add_argument("--after", type=int, default=None, metavar="N", help="start after ticket number N (the next page; the command says which)")
    p = add(tsub, "show", "tickets.cmd_show", "one ticket with its actions and attachments")
    p.add_argument("number", type=int, metavar="N")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument("--html", action="store_true", help="a standalone HTML page (sanitised mail, inline images embedded, no remote loads)")
    p = add(tsub, "status", "tickets.cmd_status", "open, set pending or close a ticket (queues the status mail when enabled)")
    p.add_argument("number", type=int, metavar="N")
    p.add_argument("status", choices=("open", "pending", "closed"))
    p = add(tsub, "assign", "owners.cmd_assign", "make a staff member the ticket's owner (none: nobody)")
    p.add_argument("number", type=int, metavar="N")
    p.add_argument("owner", metavar="ADDRESS|none")
    p = add(tsub, "merge", "tickets.cmd_merge", "merge ticket M into ticket N (M is closed; its mail lands on N)")
    p.add_argument("source", type=int, metavar="M")
    p.add_argument("into", type=int, metavar="N")
    p = add(tsub, "visibility", "tickets.cmd_visibility", "whether customers get mail about the ticket")
    p.add_argument("number", type=int, metavar="N")
    p.add_argument("visibility", choices=("customers", "internal"))

    action = add(sub, "action", None, "change actions")
    asub = action.add_subparsers(dest="action_command", metavar="SUBCOMMAND", required=True)
    p = add(asub, "toggle", "tickets.cmd_action_toggle", "flip an action private <-> public")
    p.add_argument("id", type=int, metavar="ID")

    attachment = add(sub, "attachment", None, "fetch attachments")
    atsub = attachment.add_subparsers(dest="attachment_command", metavar="SUBCOMMAND", required=True)
    p = add(atsub, "get", "attachments.cmd_get", "write an attachment's bytes to FILE (- for stdout)")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists (otherwise: exit 73)")

    blobs = add(sub, "blobs", None, "attachment bytes: database rows or files ([store] blobs)")
    bsub = blobs.add_subparsers(dest="blobs_command", metavar="SUBCOMMAND", required=True)
    p = add(bsub, "migrate", "blobs.cmd_migrate", "move every attachment's bytes into one backend (rerun to continue)")
    p.add_argument("--to", required=True, choices=("database", "directory"), help="the backend to move them into")
    p.add_argument("--batch", type=_positive, default=100, metavar="N", help="blobs per batch (default 100)")
    p.add_argument("--remove-source", action="store_true", help="delete each blob from the other backend once moved")

    box = add(sub, "outbox", None, "the notifications queue")
    osub = box.add_subparsers(dest="outbox_command", metavar="SUBCOMMAND", required=True)
    p = add(osub, "list", "outbox.cmd_list", "queued, sent and failed notifications")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    cfg = add(sub, "config", None, "the configuration")
    csub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    add(csub, "show", "settings.cmd_show", "print the effective configuration (TOML)")

    p = add(
        sub,
        "check",
        "services.cmd_check",
        "check the configuration, database, Postfix wiring, permissions and DNS",
        epilog="Exit status: 0 no problem (warnings allowed); 78 a setting must change; 69 something is down or unreachable.",
    )
    p.add_argument("--skip", type=_skip_list, default=frozenset(), metavar="LIST", help=f"comma-separated checks to skip: {','.join(CHECK_STEPS)}")
    p.add_argument("--postfix-config", metavar="DIR", default=None, help="Postfix configuration directory (postconf -c; default: the system's)")
    p.add_argument("--user", default="postdesk", help="the service user whose access is checked (default: postdesk)")

    p = add(sub, "setup-postfix", "services.cmd_setup_postfix", "print (or --apply) the postconf lines that wire the milter into this host's Postfix")
    p.add_argument("--apply", action="store_true", help="back up main.cf and master.cf, run the postconf -e lines, reload Postfix")
    p.add_argument("--postfix-config", metavar="DIR", default=None, help="Postfix configuration directory (default: the system's)")

    p = add(
        sub,
        "purge",
        "retention.cmd_purge",
        "remove tickets closed before a date, with their actions, attachments, people and blobs no longer referenced",
        epilog="Batches of --batch tickets, each its own short transaction: safe while mail arrives (docs/retention.md).",
    )
    p.add_argument("--closed-before", required=True, metavar="DATE|Nd", help="YYYY-MM-DD (UTC) or N days ago, e.g. 365d; tickets last updated before it")
    p.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")
    p.add_argument("--batch", type=_positive, default=200, metavar="N", help="tickets per transaction (default: 200)")

    person = add(sub, "person", None, "people in the store")
    psub = person.add_subparsers(dest="person_command", metavar="SUBCOMMAND", required=True)
    p = add(psub, "forget", "retention.cmd_forget", "erase a person (GDPR): their tickets go, their words and address elsewhere are erased")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--dry-run", action="store_true", help="count what would change, change nothing")

    p = add(sub, "import", "services.cmd_import", "record mail from mbox files or Maildirs (mail accepted while the milter was down)")
    p.add_argument("sources", nargs="+", metavar="FILE|MAILDIR")
    p.add_argument("--recipient", default="", help="envelope recipient (default: [organization] address)")
    return parser
