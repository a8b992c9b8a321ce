"""``python -m postdesk.lmtp [--config FILE]``: the LMTP server without the CLI.

Tests and benchmarks start it this way in a child process, logging to
stderr (``postdesk lmtp``, the service, logs to syslog).
"""

from __future__ import annotations

import argparse
import sys

from postdesk import config as configmod
from postdesk.outcomes import EX_CONFIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m postdesk.lmtp")
    parser.add_argument("--config", help="config file (default $POSTDESK_CONFIG or /etc/postdesk/postdesk.toml)")
    args = parser.parse_args(argv)
    try:
        config = configmod.load(args.config)
    except configmod.ConfigError as e:
        print(f"postdesk: {e}", file=sys.stderr)
        return EX_CONFIG
    from postdesk import logsetup

    logsetup.configure("lmtp", config, daemon=False)
    from postdesk.lmtp import run

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
