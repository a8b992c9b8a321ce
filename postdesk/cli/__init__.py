"""The ``postdesk`` console script (``postdesk = postdesk.cli:main``).

``parser`` builds the command line; one module per subcommand group holds
its handlers (``tickets``, ``attachments``, ``blobs``, ``outbox``, ``settings``, ``retention``,
``services``); ``render`` turns rows into text and JSON; ``errors`` maps
failures to sysexits(3) statuses.  ``main`` loads the configuration, sets
up logging and maps what a handler raises to an exit status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from postdesk.cli.errors import EX_CONFIG, CommandError, exit_status
from postdesk.cli.parser import build_parser, handler
from postdesk.outcomes import EX_NOINPUT, EX_OK, EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE

__all__ = ["main", "build_parser"]

# Long-running processes log like Postfix's daemons; the rest answer on stderr.
DAEMONS = ("milter", "lmtp", "notifier")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (64), from Parser
        return e.code if isinstance(e.code, int) and e.code != 1 else EX_USAGE

    if getattr(args, "filter", False):
        from postdesk import pipe

        return exit_status(pipe.run(args, args.config))

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
    logsetup.configure(args.command, config, daemon=args.command in DAEMONS)

    try:
        return exit_status(handler(args.handler)(args, config))
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
            print(f"postdesk: {e.args[0] if e.args else 'not found'}", file=sys.stderr)
            return EX_NOINPUT
        import logging

        logging.getLogger("postdesk").exception("%s: unexpected error: %s", args.command, e)
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
