"""Rule "forwarded": ``[fwd]`` from verified staff opens the customer's ticket.

Rule "commands" saw ``[fwd]`` on a mail opening a ticket; here the
customer is found in the forwarded part (``postdesk.filter.forwarded``):
they become the requester, the forwarded text is the ticket's first
(public) action and its acknowledgement goes to them (staff vouched for
the address by forwarding it; rule "ack" reads ``requester``), and the
staff member's own text above the forward is a private note.  No customer
found, or one of our own or a staff address: the command is refused (the
sender is told) and the mail is an ordinary new ticket of theirs.

The action's HTML follows its text: the attached mail's own HTML when the
customer's mail came as a message/rfc822 part; none for an inline forward,
whose HTML mixes the staff member's private note with the customer's words.
"""

from __future__ import annotations

from postdesk.filter import body as bodymod
from postdesk.filter import forwarded, htmlbody, parts
from postdesk.filter.decision import Decision
from postdesk.filter.draft import Draft
from postdesk.filter.parse import Parsed


def read(parsed: Parsed, text: str) -> forwarded.Forwarded | None:
    """``forwarded.find``, once per message and text (rule "commands" reads it too)."""
    return parsed.memo(("forwarded", text), lambda: forwarded.find(parsed.message, text))


def apply(d: Draft) -> Decision | None:
    if not d.forward:
        return None
    found = read(d.parsed, d.text)
    if found is None:
        d.refused.append("[fwd]: no forwarded mail with a From: line found in it")
    elif d.config.is_own_address(found.address) or d.config.matches_staff(found.address):
        d.refused.append(f"[fwd]: the forwarded mail is from {found.address}, not from a customer")
    else:
        d.requester, d.requester_name = found.address, found.name
        d.note = found.note
        d.text, d.new_text = found.text, bodymod.new_text(found.text)
        d.html = _attached_html(d) if found.style == "attachment" else ""
        return None
    d.forward = False
    d.flags.discard("fwd")
    d.flags.add("refused")
    return None


def _attached_html(d: Draft) -> str:
    """The HTML of the first attached mail (the one ``forwarded.attached`` read)."""
    for part, _alt in parts.leaves(d.parsed.message):
        if parts.content_type(part) in ("message/rfc822", "message/global"):
            inner = parts.children(part)
            if inner:
                return htmlbody.extract(inner[0])
    return ""
