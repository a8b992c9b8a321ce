"""Step: the customer inside a mail staff forwarded with ``[fwd]``.

A staff member who received a customer's mail forwards it to a support or
department address with ``[fwd]`` in the subject; the ticket is the
customer's.  The customer is found, in this order:

1. an inline forward, as the clients write it in the text:

   - Gmail: ``---------- Forwarded message ---------`` (German
     ``Weitergeleitete Nachricht``), then ``From:``/``Von:`` lines;
   - Thunderbird: ``-------- Forwarded Message --------`` (German
     ``Weitergeleitete Nachricht``), then ``Subject:``, ``Date:``,
     ``From:`` (tab after the colon);
   - Apple Mail: ``Begin forwarded message:`` (German ``Anfang der
     weitergeleiteten Nachricht:``), a blank line, then ``From:``;
   - Outlook: a rule of underscores (or nothing), then ``From:`` (or
     ``Von:``, ``De :``) immediately followed by ``Sent:`` (``Gesendet:``,
     ``Envoyé :``); the address as ``<a@b>`` or ``[mailto:a@b]``;
2. an attached message (``message/rfc822``, "forward as attachment" in
   Outlook and Thunderbird): its From:.  Second, because an inline
   forward's mail may carry a message of its own (Gmail keeps a forwarded
   mail's attachments), whose From: its sender chose.

The header block ends at its first blank line; what follows is the
customer's mail, what the staff member wrote above the marker their note
(for an attached message, the note is the staff member's whole text).
The first forward wins (a customer's own forwarded history sits below it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from postdesk.filter import body as bodymod
from postdesk.filter import headers as hdr
from postdesk.filter import parts

SCAN_LINES = 5000  # lines of the text looked at for a marker
HEADER_LINES = 15  # lines of a forwarded header block

_MARKER = re.compile(
    r"^[ \t>]*(?:-{2,}[ \t]*(?:forwarded message|weitergeleitete nachricht|message transf[ée]r[ée]|original message"
    r"|urspr[üu]ngliche nachricht|message d'origine|mensaje reenviado)[ \t]*-{2,}"
    r"|(?:begin forwarded message|anfang der weitergeleiteten nachricht|d[ée]but du message r[ée]exp[ée]di[ée])[ \t]*:)[ \t]*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^[ \t>]*_{10,}[ \t]*$")
_FROM = re.compile(r"^[ \t>*]*(?:from|von|de)[ \t]*:[ \t*]*(.+)$", re.IGNORECASE)
_SENT = re.compile(r"^[ \t>*]*(?:sent|gesendet|envoy[ée]|date|datum)[ \t]*:", re.IGNORECASE)
_HEADER = re.compile(r"^[ \t>*]*[A-Za-zÀ-ÿ-]{2,20}[ \t]*:")
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+")


@dataclass(frozen=True)
class Forwarded:
    address: str  # the customer, lower-cased
    name: str  # their display name, cleaned ("" when none)
    text: str  # the customer's mail
    note: str  # what the staff member wrote above it
    style: str  # "attachment" | "inline"


def sender(value: str) -> tuple[str, str]:
    """(name, address) of a forwarded "From:" line value; address "" when none."""
    value = value.replace("*", " ").strip()
    m = _ADDRESS.search(value)
    if not m:
        return "", ""
    address = hdr.clean_address(m.group(0))
    name = value[: m.start()].rstrip()
    if name.lower().endswith("mailto:"):
        name = name[:-7]
    name = name.rstrip(" <[(").strip().strip('"').strip()
    if "@" in name:
        name = ""
    return hdr.clean_header(name)[:200], address


def _unquote(lines: list[str]) -> list[str]:
    """Drop one level of "> " when every non-blank line has it (Apple Mail quotes forwards)."""
    body = [line for line in lines if line.strip()]
    if body and all(line.lstrip().startswith(">") for line in body):
        return [re.sub(r"^[ \t]*> ?", "", line) for line in lines]
    return lines


def _header_block(lines: list[str], start: int) -> tuple[str, int] | None:
    """The From: value of the header block starting near ``start`` and where it ends."""
    i = start
    while i < len(lines) and not lines[i].strip(" \t>") and i - start < 3:
        i += 1
    value = ""
    j = i
    while j < len(lines) and j - i < HEADER_LINES and lines[j].strip(" \t>"):
        if not _HEADER.match(lines[j]) and not value:
            return None
        m = _FROM.match(lines[j])
        if m and not value:
            value = m.group(1)
        j += 1
    return (value, j) if value else None


def inline(text: str) -> Forwarded | None:
    lines = text.replace("\r\n", "\n").split("\n")[:SCAN_LINES]
    for i, line in enumerate(lines):
        if _MARKER.match(line):
            found = _header_block(lines, i + 1)
        elif _RULE.match(line):
            found = _header_block(lines, i + 1)
        elif _FROM.match(line) and i + 1 < len(lines) and _SENT.match(lines[i + 1]):
            found = _header_block(lines, i)  # Outlook without a rule above
        else:
            continue
        if found is None:
            continue
        value, end = found
        name, address = sender(value)
        if not address:
            continue
        rest = _unquote(lines[end:])
        return Forwarded(address, name, "\n".join(rest).strip("\n"), "\n".join(lines[:i]).strip(), "inline")
    return None


def attached(msg: Message, text: str) -> Forwarded | None:
    for part, _alt in parts.leaves(msg):
        if parts.content_type(part) not in ("message/rfc822", "message/global"):
            continue
        inner = parts.children(part)
        if not inner:
            continue
        found = hdr.addresses([str(v) for v in (inner[0].get_all("from") or [])])
        if not found:
            continue
        name, address = found[0]
        return Forwarded(address, name, bodymod.extract(inner[0]).text.strip("\n"), text.strip(), "attachment")
    return None


def find(msg: Message, text: str) -> Forwarded | None:
    """The forwarded customer of a mail (module docstring), or None.

    An inline forward in the staff member's text comes first: the mail they
    forwarded may itself carry an attached message (Gmail keeps a forwarded
    mail's attachments), whose From: is whoever that sender chose, not the
    customer the staff member vouched for by forwarding."""
    return inline(text) or attached(msg, text)


__all__ = ["Forwarded", "find", "inline", "attached", "sender"]
