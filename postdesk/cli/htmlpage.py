"""``postdesk ticket show N --html``: the ticket as one standalone HTML page.

Each action shows its stored HTML (sanitised again on the way out: a row
written by an older postdesk, or by hand, gets the same rules), or its text
as preformatted text when the mail had no HTML.  Inline images are embedded
as ``data:`` URLs from the stored attachments (sha256 checked), so the page
needs nothing from anywhere: its Content-Security-Policy
(``postdesk.sanitise.CSP``) forbids every remote load, script, form and
frame.  A cid: that names no stored image loses its ``src``.
"""

from __future__ import annotations

import base64
import hashlib
import html as htmllib
import re
from collections.abc import Callable

from postdesk.sanitise import html_page, sanitise_html

# Types a browser shows in <img> without running anything (no SVG: it is a document).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
MAX_IMAGE = 10 * 1024 * 1024
MAX_IMAGES_TOTAL = 50 * 1024 * 1024

_CID_SRC = re.compile(r'src="cid:([^"]*)"')

ReadBytes = Callable[[int], bytes | None]


def _data_url(att: dict, read: ReadBytes) -> str:
    if str(att.get("content_type", "")).lower() not in IMAGE_TYPES or int(att.get("size") or 0) > MAX_IMAGE:
        return ""
    data = read(int(att["id"]))
    if data is None or (att.get("sha256") and hashlib.sha256(data).hexdigest() != att["sha256"]):
        return ""
    return f"data:{att['content_type'].lower()};base64,{base64.b64encode(data).decode('ascii')}"


def _action_html(action: dict, read: ReadBytes, budget: list[int]) -> str:
    body = sanitise_html(action.get("html") or "")
    if not body:
        return f'<pre style="white-space: pre-wrap">{htmllib.escape(action.get("text") or "")}</pre>'
    by_cid = {a.get("content_id"): a for a in action.get("attachments") or [] if a.get("content_id")}

    def embed(m: re.Match[str]) -> str:
        att = by_cid.get(htmllib.unescape(m.group(1)))
        if att is None or budget[0] < int(att.get("size") or 0):
            return ""
        url = _data_url(att, read)
        if url:
            budget[0] -= int(att.get("size") or 0)
        return f'src="{url}"' if url else ""

    return _CID_SRC.sub(embed, body)


def ticket_page(ticket: dict, tag: str, read: ReadBytes) -> str:
    """The page for ``ticket`` (``show_ticket``'s dict); ``read(id)`` gives an attachment's bytes or None."""
    esc = htmllib.escape
    title = f"[{tag}{ticket.get('number')}] {ticket.get('subject') or ''}"
    parts = [
        f"<h1>{esc(title)}</h1>",
        f"<p>status: {esc(str(ticket.get('status') or ''))}; requester: {esc(str(ticket.get('requester') or ''))}; "
        f"created: {esc(str(ticket.get('created_at') or ''))}</p>",
    ]
    budget = [MAX_IMAGES_TOTAL]
    for action in ticket.get("actions") or []:
        head = " &middot; ".join(
            esc(str(x))
            for x in (
                f"action {action.get('id')}",
                action.get("created_at") or "",
                action.get("author") or "",
                "public" if action.get("public") else "private",
            )
            if x
        )
        files = [
            f"<li>{esc(str(a.get('filename') or ''))} ({esc(str(a.get('content_type') or ''))}, {a.get('size')} bytes"
            f"{', inline' if a.get('inline') else ''})</li>"
            for a in action.get("attachments") or []
        ]
        parts.append(
            f"<hr>\n<h2>{head}</h2>\n<div>{_action_html(action, read, budget)}</div>"
            + (f"\n<ul>{''.join(files)}</ul>" if files else "")
        )
    return html_page("\n".join(parts), title)
