"""Step "content": the body text, the new text and the attachments.

Only mail that will be recorded gets here.  The reading itself lives in
``postdesk.filter.body``, ``postdesk.filter.htmlbody`` and
``postdesk.filter.attachments``.  A part the HTML shows by ``cid:`` is
inline whatever its Content-Disposition says (Apple Mail marks pasted
images "attachment" and still shows them in place).  More
attachments than ``[limits] max_attachments``, or a multipart cut off
before its closing boundary (RFC 2046 section 5.1.1): something is
missing, and the action is flagged ``truncated`` so staff know.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from postdesk.filter import attachments as attmod
from postdesk.filter import body as bodymod
from postdesk.filter import htmlbody
from postdesk.filter.decision import Attachment, Decision
from postdesk.filter.draft import Draft
from postdesk.filter.parse import Parsed
from postdesk.sanitise import cid_references


@dataclass(frozen=True)
class Content:
    text: str
    new_text: str
    html: str
    attachments: tuple[Attachment, ...]
    truncated: bool


def read(parsed: Parsed, max_attachments: int) -> Content:
    """The message's content, read once (``Parsed.memo``; see pipeline.read_ahead)."""

    def compute() -> Content:
        body = bodymod.extract(parsed.message)
        found = attmod.collect(parsed.message, max_attachments)
        attachments = found.attachments
        html = htmlbody.extract(parsed.message)
        if html and any(a.content_id for a in attachments):
            shown = set(cid_references(html))
            attachments = tuple(replace(a, inline=True) if a.content_id in shown else a for a in attachments)
        truncated = found.truncated or "CloseBoundaryNotFoundDefect" in parsed.defects
        return Content(body.text, body.new_text, html, attachments, truncated)

    return parsed.memo(("content", max_attachments), compute)


def apply(d: Draft) -> Decision | None:
    c = read(d.parsed, d.config.limits.max_attachments)
    d.text, d.new_text, d.html, d.attachments = c.text, c.new_text, c.html, c.attachments
    if c.truncated:
        d.flags.add("truncated")
    return None
