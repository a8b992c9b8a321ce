#!/usr/bin/env python3
"""A stand-in for opendkim/opendmarc in front of postdesk (for tests only).

Usage: auth_verifier_milter.py SOCKET_PATH AUTHSERV_ID RESULTS

Inserts ``Authentication-Results: AUTHSERV_ID; RESULTS`` at header index 1,
as opendkim and opendmarc do (below the MTA's own Received header), into
every message, and decides nothing.
"""

from __future__ import annotations

import os
import sys

# tests/ must not shadow pymilter's C module "milter".
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import Milter  # noqa: E402
import milter  # noqa: E402

AUTHSERV_ID, RESULTS = sys.argv[2], sys.argv[3]


class Verifier(Milter.Base):
    def eom(self):
        self.addheader("Authentication-Results", f"{AUTHSERV_ID}; {RESULTS}", 1)
        return Milter.ACCEPT


if __name__ == "__main__":
    os.umask(0)  # smtpd (user postfix) must open the socket
    Milter.factory = Verifier
    milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("verifier", "unix:" + sys.argv[1], 600)
