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

from dataclasses import replace

from postdesk.filter import attachments as attmod
from postdesk.filter import body as bodymod
from postdesk.filter import htmlbody
from postdesk.filter.decision import Decision
from postdesk.filter.draft import Draft
from postdesk.sanitise import cid_references


def apply(d: Draft) -> Decision | None:
    body = bodymod.extract(d.parsed.message)
    found = attmod.collect(d.parsed.message, d.config.limits.max_attachments)
    d.text, d.new_text, d.attachments = body.text, body.new_text, found.attachments
    d.html = htmlbody.extract(d.parsed.message)
    if d.html and any(a.content_id for a in d.attachments):
        shown = set(cid_references(d.html))
        d.attachments = tuple(replace(a, inline=True) if a.content_id in shown else a for a in d.attachments)
    if found.truncated or "CloseBoundaryNotFoundDefect" in d.parsed.defects:
        d.flags.add("truncated")
    return None
