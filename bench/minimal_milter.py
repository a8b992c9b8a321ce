#!/usr/bin/env python3
"""Two floors of pymilter + libmilter, for bench/milter.py --with-minimal.

    minimal_milter.py SOCKET_PATH           accept every message at DATA
    minimal_milter.py --read SOCKET_PATH    read every header and the body,
                                            then tag the Subject and add a header

The first is what pass-through mail costs whatever a milter does; the
second what a support message costs a pymilter milter that does no work of
its own (no filter, no store): the same callbacks and edits as postdesk's.
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


class Reading(Milter.Base):
    """Keeps the message as postdesk's spool does, then edits like postdesk.

    The same callbacks negotiated "no reply" as postdesk's (MAIL, each
    header, each body chunk); end of headers and end of data reply."""

    @Milter.noreply
    def envfrom(self, mailfrom, *params):
        self.parts: list[bytes] = []
        self.subject = b""
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def header(self, name, value):
        self.parts.append(name.encode() + b": " + value + b"\r\n")
        if name.lower() == "subject":
            self.subject = value
        return Milter.CONTINUE

    def eoh(self):
        self.parts.append(b"\r\n")
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk):
        self.parts.append(chunk)
        return Milter.CONTINUE

    def eom(self):
        raw = b"".join(self.parts)
        self.chgheader("Subject", 1, "[#1000] " + self.subject.decode("utf-8", "replace"))
        self.addheader("X-Postdesk-Ticket", str(len(raw)))
        return Milter.ACCEPT


def main() -> int:
    read = sys.argv[1] == "--read"
    path = sys.argv[-1]
    Milter.factory = Reading if read else Minimal
    milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS if read else 0)
    Milter.runmilter("reading" if read else "minimal", "unix:" + path, 600)
    return 0


if __name__ == "__main__":
    os.umask(0)  # the socket must be writable by smtpd (user postfix)
    sys.exit(main())
