#!/usr/bin/env python3
"""A do-nothing pymilter milter: accepts every message at DATA.

bench/milter.py --with-minimal runs pass-through mail through it too, to
show the floor that pymilter + libmilter cost per SMTP session whatever the
milter does (usage: minimal_milter.py SOCKET_PATH).
"""

from __future__ import annotations

import os
import sys

# bench/milter.py would shadow pymilter's C module "milter":
# drop this script's directory from the import path first.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import Milter  # noqa: E402
import milter  # noqa: E402


class Minimal(Milter.Base):
    def data(self):
        return Milter.ACCEPT


def main() -> int:
    path = sys.argv[1]
    Milter.factory = Minimal
    milter.set_flags(0)
    Milter.runmilter("minimal", "unix:" + path, 600)
    return 0


if __name__ == "__main__":
    os.umask(0)  # the socket must be writable by smtpd (user postfix)
    sys.exit(main())
