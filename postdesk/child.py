"""``python -m postdesk.milter`` and ``python -m postdesk.lmtp``: a server
started as a child process, without the CLI.

Tests, the demo and the benchmarks start the servers this way and read
their stderr: logging "auto" means stderr here, while the services
(``postdesk milter``, ``postdesk lmtp``) log to syslog.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from postdesk import config as configmod
from postdesk.config import Config
from postdesk.outcomes import EX_CONFIG


def main(name: str, run: Callable[[Config], int], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m postdesk.{name}")
    parser.add_argument("--config", help="config file (default $POSTDESK_CONFIG or /etc/postdesk/postdesk.toml)")
    args = parser.parse_args(argv)
    try:
        config = configmod.load(args.config)
    except configmod.ConfigError as e:
        print(f"postdesk: {e}", file=sys.stderr)
        return EX_CONFIG
    from postdesk import logsetup

    logsetup.configure(name, config, daemon=False)
    return run(config)
