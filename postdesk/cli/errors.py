"""Exit statuses and the error a subcommand raises to pick one.

Exit statuses are sysexits(3), because Postfix pipe(8) and systemd read them:
0 done, 64 usage, 65/66 bad or missing data (no such ticket, action or
attachment), 69 a service is unavailable, 70 internal error, 73 cannot create
the output file, 75 try again later (store locked or unreachable), 78
configuration error.  Never 1: pipe(8) bounces a message on 1, and a plain 1
also hides what went wrong.
"""

from __future__ import annotations

import sys
from typing import Any

from postdesk.outcomes import EX_OK, EX_SOFTWARE

EX_CANTCREAT = 73
EX_CONFIG = 78


class CommandError(Exception):
    """A failure the user can act on: message for stderr, sysexits code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exit_status(rc: Any) -> int:
    """A part returning None/True means success; 1 is never let through."""
    if rc is None or rc is True:
        return EX_OK
    if rc is False:
        return EX_SOFTWARE
    if not isinstance(rc, int) or not 0 <= rc <= 255 or rc == 1:
        print(f"postdesk: internal error: exit status {rc!r} replaced by {EX_SOFTWARE}", file=sys.stderr)
        return EX_SOFTWARE
    return rc
