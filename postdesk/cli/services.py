"""The long-running and set-up subcommands: ``init``, ``milter``, ``lmtp``,
``notifier``, ``check``, ``setup-postfix`` and ``import``."""

from __future__ import annotations

from postdesk.cli.common import open_store
from postdesk.config import redact_url
from postdesk.outcomes import EX_OK


def cmd_init(args, config) -> int:
    import logging

    # Alembic logs its plugin set-up at INFO; one line of ours says the result.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    store = open_store(config)
    store.init(config.organization.first_ticket_number)
    print(f"postdesk: database {redact_url(config.store.url)} is at the newest schema; attachments in {store.blobs.describe()}")
    return EX_OK


def cmd_milter(args, config) -> int:
    from postdesk import milter

    return milter.run(config)


def cmd_lmtp(args, config) -> int:
    from postdesk import lmtp

    return lmtp.run(config)


def cmd_notifier(args, config) -> int:
    from postdesk import notifier

    return notifier.run(config, once=args.once)


def cmd_check(args, config) -> int:
    from postdesk import check

    return check.run(config, skip=args.skip, postfix_config=args.postfix_config, user=args.user)


def cmd_setup_postfix(args, config) -> int:
    from postdesk import check

    return check.setup_postfix(config, apply=args.apply, postfix_config=args.postfix_config)


def cmd_import(args, config) -> int:
    from postdesk import importer

    return importer.run(config, args.sources, recipient=args.recipient)
