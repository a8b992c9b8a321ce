"""Step: the body as HTML, sanitised, beside the text (``Decision.html``).

Which HTML: the same parts the text comes from (``postdesk.filter.body``),
read for their markup instead.  In a multipart/alternative the last HTML
rendering wins (RFC 2046 section 5.1.4: the last is the richest); in a
multipart/related the root, whose images are the related parts, named by
``cid:``; in a multipart/mixed every inline body part in order, a plain-text
part among HTML ones shown as preformatted text (Apple Mail splits a reply
with attachments in the middle that way).  A mail with no HTML part has no
HTML: "" (the text is all there is).

Everything passes through ``postdesk.sanitise.sanitise_html``: what is kept
can be shown to staff or sent on without running, loading or submitting
anything.  ``cid:`` references survive; the content step marks the parts
they name as inline.
"""

from __future__ import annotations

import html as htmllib
import logging
from email.message import Message

from postdesk.filter import parts
from postdesk.sanitise import sanitise_html

# Past this, HTML is cut before sanitising: the text is kept whole anyway,
# and 2 MB of markup is no mail a person wrote.
MAX_HTML = 2 * 1024 * 1024

log = logging.getLogger("postdesk.filter")


def _leaf(part: Message) -> tuple[str, bool]:
    """(raw markup, is HTML) of a body leaf; plain text escaped into a <pre>."""
    t = parts.text(part)
    if parts.content_type(part) == "text/html":
        return t, True
    return (f'<pre style="white-space: pre-wrap">{htmllib.escape(t)}</pre>' if t.strip() else ""), False


def _html(part: Message, depth: int = 0) -> tuple[list[str], bool]:
    """(pieces of markup, any of them HTML) for a part, choosing as body.py does."""
    if depth > parts.MAX_DEPTH:
        return [], False
    if not parts.is_container(part):
        body = parts.classify(part) == "body" or (
            depth == 0 and parts.content_type(part) in ("text/plain", "text/html") and parts.disposition(part) != "attachment"
        )
        if not body:
            return [], False
        markup, is_html = _leaf(part)
        return ([markup] if markup else []), is_html
    kids = parts.children(part)[: parts.MAX_PARTS]
    ct = parts.content_type(part)
    if ct == "multipart/alternative":
        chosen: tuple[list[str], bool] = ([], False)
        for child in kids:
            pieces, is_html = _html(child, depth + 1)
            if pieces and (is_html or not chosen[1]):
                chosen = (pieces, is_html)
        return chosen
    if ct == "multipart/related":
        return _html(kids[0], depth + 1) if kids else ([], False)
    out: list[str] = []
    any_html = False
    for child in kids:
        pieces, is_html = _html(child, depth + 1)
        out.extend(pieces)
        any_html = any_html or is_html
    return out, any_html


def extract(msg: Message) -> str:
    """The message's sanitised HTML, "" when it has no HTML part; never raises."""
    if not any(parts.content_type(leaf) == "text/html" for leaf, _ in parts.leaves(msg)):
        return ""  # plain text only: no need to decode its parts a second time (body.py did)
    try:
        pieces, is_html = _html(msg)
    except RecursionError:
        return ""
    if not is_html:
        return ""
    cleaned: list[str] = []
    size = sum(len(p) for p in pieces)
    if size > MAX_HTML:
        log.info("HTML body of %d characters cut to %d before sanitising", size, MAX_HTML)
    budget = MAX_HTML
    for piece in pieces:
        if budget <= 0:
            break
        safe = sanitise_html(piece[:budget])
        budget -= len(piece)
        if safe:
            cleaned.append(safe)
    return "\n".join(cleaned)
