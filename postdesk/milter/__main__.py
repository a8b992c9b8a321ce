"""``python -m postdesk.milter [--config FILE]``: the milter without the CLI.

Tests, the demo and the benchmark start the milter this way in a child
process (libmilter is process-global: one milter per process).
"""

from __future__ import annotations

import argparse
import sys

from postdesk import config as configmod
from postdesk.outcomes import EX_CONFIG


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m postdesk.milter")
    parser.add_argument("--config", help="config file (default $POSTDESK_CONFIG or /etc/postdesk/postdesk.toml)")
    args = parser.parse_args(argv)
    try:
        config = configmod.load(args.config)
    except configmod.ConfigError as e:
        print(f"postdesk: {e}", file=sys.stderr)
        return EX_CONFIG
    from postdesk import logsetup

    # Whoever starts this entry point reads its stderr: "auto" means stderr
    # here; the service (`postdesk milter`) logs to syslog.
    logsetup.configure("milter", config, daemon=False)
    from postdesk.milter import run

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
