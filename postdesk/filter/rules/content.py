"""Step "content": the body text, the new text and the attachments.

Only mail that will be recorded gets here.  The reading itself lives in
``postdesk.filter.body`` and ``postdesk.filter.attachments``.  More
attachments than ``[limits] max_attachments``, or a multipart cut off
before its closing boundary (RFC 2046 section 5.1.1): something is
missing, and the action is flagged ``truncated`` so staff know.
"""

from __future__ import annotations

from postdesk.filter import attachments as attmod
from postdesk.filter import body as bodymod
from postdesk.filter.decision import Decision
from postdesk.filter.draft import Draft


def apply(d: Draft) -> Decision | None:
    body = bodymod.extract(d.parsed.message)
    found = attmod.collect(d.parsed.message, d.config.limits.max_attachments)
    d.text, d.new_text, d.attachments = body.text, body.new_text, found.attachments
    if found.truncated or "CloseBoundaryNotFoundDefect" in d.parsed.defects:
        d.flags.add("truncated")
    return None
