"""``python -m postdesk.lmtp [--config FILE]``: see postdesk.child."""

from __future__ import annotations

import sys

from postdesk import child


def main(argv: list[str] | None = None) -> int:
    # Imported here: the server's modules load after the config is read.
    from postdesk.lmtp import run

    return child.main("lmtp", run, argv)


if __name__ == "__main__":
    sys.exit(main())
