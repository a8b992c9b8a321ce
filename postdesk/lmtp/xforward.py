"""Postfix's XFORWARD command: who the original SMTP client was.

After the queue, the connection postdesk sees comes from Postfix itself, so
the client address, its name, its HELO and the queue id of the original
session are lost unless Postfix forwards them (``lmtp_send_xforward_command
= yes``, Postfix's XFORWARD_README).  They are authentication input (SPF
checks the client address, ``[trust] trusted_networks`` trusts it), so
``postdesk lmtp`` takes them only on its unix socket, which file modes keep
to Postfix; on TCP anyone who can connect could claim any address.

Syntax: ``XFORWARD NAME=x ADDR=y ...``, values in xtext (RFC 3461 4), with
``[UNAVAILABLE]`` and ``[TEMPUNAVAIL]`` for "not known".  Attributes are kept
until the end of the mail transaction (DATA done, RSET, LHLO), as Postfix's
smtpd does; Postfix sends them again before each MAIL.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
UNKNOWN = ("[UNAVAILABLE]", "[TEMPUNAVAIL]")
_XTEXT = re.compile(rb"\+([0-9A-F]{2})")
_QUEUE_ID = re.compile(r"^[0-9A-Za-z]{1,64}$")


class XForwardError(ValueError):
    """A malformed XFORWARD command: answered 501, nothing kept."""


@dataclass(frozen=True)
class XForward:
    name: str = ""  # the client's verified name
    addr: str = ""  # its IP address, without Postfix's "IPV6:" prefix
    helo: str = ""
    ident: str = ""  # the Postfix queue id: the first word of every log line
    proto: str = ""
    source: str = ""  # LOCAL or REMOTE
    port: str = ""


def xtext_decode(value: str) -> str:
    """RFC 3461 4: "+XX" is the byte XX; the result is kept printable ASCII."""
    raw = _XTEXT.sub(lambda m: bytes([int(m.group(1), 16)]), value.encode("ascii", "replace"))
    return "".join(c for c in raw.decode("ascii", "replace") if " " < c <= "~")


def parse(arg: str | None, current: XForward) -> XForward:
    """``current`` updated with the attributes of one XFORWARD command."""
    words = (arg or "").split()
    if not words:
        raise XForwardError("XFORWARD needs at least one attribute")
    changes: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        key = key.upper()
        if not eq or key not in ATTRIBUTES:
            raise XForwardError(f"unknown or malformed XFORWARD attribute {key[:20]!r}")
        value = "" if value.upper() in UNKNOWN else xtext_decode(value)
        if key == "ADDR" and value:
            if value.upper().startswith("IPV6:"):
                value = value[5:]
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError:
                raise XForwardError(f"XFORWARD ADDR {value[:64]!r} is not an IP address") from None
        if key == "IDENT" and value and not _QUEUE_ID.match(value):
            raise XForwardError(f"XFORWARD IDENT {value[:64]!r} is not a queue id")
        changes[key.lower()] = value[:255]
    return replace(current, **changes)
