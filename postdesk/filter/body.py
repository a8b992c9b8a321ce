"""Step: the body as text, and the "new text" without quoted history.

``text`` is what the sender wrote, whole: text/plain preferred, an HTML-only
mail converted to readable text (``html2text``), the inline text parts of a
multipart/mixed joined.  ``new_text`` is what is new in this mail: the text
with quoted blocks and the signature removed, whatever the quoting style:

- a quote block is an attribution line followed by ">" lines, or ">" lines
  alone; unquoted text before it, after it (bottom-posting) and between
  blocks (interleaved replies) is kept;
- attribution lines recognised: "On <date>, <name> wrote:" (also wrapped over
  two lines), "Am ... schrieb ...:", "Le ... a écrit :", "El ... escribió:",
  "Op ... schreef ...:", mutt's "* Name <addr> [2024-01-01 10:00 +0000]:".
  An attribution followed by no ">" line introduces an unquoted copy:
  everything after it is history;
- history that is not quoted line by line ends the new text, everything
  below it is the earlier message (top-posting): our own
  ``##- Please type your reply above this line -##``, Outlook's
  "-----Original Message-----" and its "From: ... / Sent: ..." header block
  (also "Von: / Gesendet:"), with the underscore rule before it;
- the RFC 3676 section 4.3 signature separator "-- " ends the new text.

Every check looks at one line, bounded, with startswith or short anchored
patterns: a 1 MB line costs one pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from postdesk.filter import parts
from postdesk.filter.html2text import html_to_text
from postdesk.mail import REPLY_MARKER

MAX_LINE_CHECK = 400  # quote-header lines are short; longer lines are text

_WROTE = re.compile(
    r"^(?:on\s.{0,300}\bwrote\s?:|am\s.{0,300}\bschrieb\b.{0,300}:|le\s.{0,300}\ba\s+[ée]crit\s?:"
    r"|el\s.{0,300}\bescribi[óo]\s?:|op\s.{0,300}\bschreef\b.{0,300}:)\s*$",
    re.IGNORECASE,
)
# mutt's popular custom attribution: "* Jane Doe <jane@x.org> [2024-01-01 10:00 +0000]:"
_MUTT = re.compile(r"^\*\s.{0,300}\[\d{4}-\d\d-\d\d[^\]]{0,60}\]:\s*$")
_WROTE_START = re.compile(r"^(?:on|am|le|el|op)\s", re.IGNORECASE)
_WROTE_END = re.compile(r"(?:\bwrote|\bschrieb\b.{0,300}|\ba\s+[ée]crit|\bescribi[óo]|\bschreef\b.{0,300})\s?:\s*$", re.IGNORECASE)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|originalnachricht|mensaje original)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_FROM = re.compile(r"^\s*\*?(?:from|von|de|van|da)\s?\*?:", re.IGNORECASE)
_SENT = re.compile(r"^\s*\*?(?:sent|gesendet|envoy[ée]|enviado|verzonden|inviato)\s?\*?:", re.IGNORECASE)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")


@dataclass(frozen=True)
class Body:
    text: str
    new_text: str


def _leaf_text(part: Message) -> tuple[str, bool]:
    ct = parts.content_type(part)
    t = parts.text(part)
    if ct == "text/html":
        return html_to_text(t), True
    return t, False


def _body(part: Message, depth: int = 0) -> tuple[str, bool]:
    """(text, came from HTML) of a part, choosing among alternatives."""
    if depth > parts.MAX_DEPTH:
        return "", False
    if not parts.is_container(part):
        if parts.classify(part) == "body":
            return _leaf_text(part)
        if depth == 0 and parts.content_type(part) in ("text/plain", "text/html") and parts.disposition(part) != "attachment":
            return _leaf_text(part)  # a single-part message with a filename is still its own body
        return "", False
    kids = parts.children(part)[: parts.MAX_PARTS]
    if parts.content_type(part) == "multipart/alternative":
        # RFC 2046 5.1.4: same content, different formats; we prefer plain text.
        html_choice: tuple[str, bool] | None = None
        for child in kids:
            text, from_html = _body(child, depth + 1)
            if not text.strip():
                continue
            if not from_html:
                return text, False
            if html_choice is None:
                html_choice = (text, True)
        return html_choice or ("", False)
    if parts.content_type(part) == "multipart/related":
        # RFC 2387: the root (first part) is the body, the rest are its resources.
        return _body(kids[0], depth + 1) if kids else ("", False)
    texts = []
    any_html = False
    for child in kids:
        text, from_html = _body(child, depth + 1)
        if text.strip():
            texts.append(text.strip("\n"))
            any_html = any_html or from_html
    return "\n\n".join(texts), any_html


def body_text(msg: Message) -> str:
    """The whole body as text, newlines normalised to \\n; never raises."""
    try:
        text, _ = _body(msg)
    except RecursionError:
        text = ""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.strip("\n")


HISTORY = "history"  # everything from here on is the earlier message
ATTRIBUTION = "attribution"  # introduces the quote block below it


def _quote_header(lines: list[str], i: int) -> tuple[str, int]:
    """What line i starts: (HISTORY, 1), (ATTRIBUTION, lines it spans) or ("", 0)."""
    line = lines[i].strip()
    if not line or len(line) > MAX_LINE_CHECK:
        return "", 0
    if REPLY_MARKER in line:
        return HISTORY, 1
    if _ORIGINAL.match(line):
        return HISTORY, 1
    if _WROTE_START.match(line):
        if _WROTE.match(line):
            return ATTRIBUTION, 1
        # Clients wrap a long attribution line: "On Mon, ... Jane Doe <\njane@x.org> wrote:".
        if i + 1 < len(lines):
            nxt = lines[i + 1].strip()
            if len(nxt) <= MAX_LINE_CHECK and _WROTE_END.search(nxt) and _WROTE.match(line + " " + nxt):
                return ATTRIBUTION, 2
    if _MUTT.match(line):
        return ATTRIBUTION, 1
    if _UNDERSCORES.match(line) and i + 1 < len(lines) and _FROM.match(lines[i + 1][:MAX_LINE_CHECK]):
        return HISTORY, 1
    if _FROM.match(line):
        # Outlook reply header: From: / Sent: (Date:) within the next lines.
        for j in range(i + 1, min(i + 4, len(lines))):
            if _SENT.match(lines[j][:MAX_LINE_CHECK]):
                return HISTORY, 1
    return "", 0


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _blank(line: str) -> bool:
    return not line.strip()


def new_text(text: str) -> str:
    """``text`` without quote blocks, unquoted history below a marker, and signature.

    Unquoted text before, between and after quote blocks is kept, so a
    bottom-posted or interleaved reply has its new text too.
    """
    lines = [line.rstrip("\r") for line in text.split("\n")]
    n = len(lines)
    out: list[str] = []
    i = 0
    while i < n:
        line = lines[i]
        if line in ("-- ", "--"):  # RFC 3676 4.3 signature separator (the space is often lost)
            break
        if _is_quoted(line):
            while i < n and _is_quoted(lines[i]):
                i += 1
            # The blank lines around a removed block collapse into at most one.
            if not out or _blank(out[-1]):
                while i < n and _blank(lines[i]):
                    i += 1
            continue
        kind, span = _quote_header(lines, i)
        if kind == HISTORY:
            break
        if kind == ATTRIBUTION:
            j = i + span
            while j < n and _blank(lines[j]):
                j += 1
            if j < n and _is_quoted(lines[j]):
                i = j  # the attribution goes with its quote block
                continue
            break  # an attribution over an unquoted copy: the rest is history
        out.append(line)
        i += 1
    first = next((k for k, line in enumerate(out) if not _blank(line)), len(out))
    return "\n".join(out[first:]).rstrip()


def extract(msg: Message) -> Body:
    text = body_text(msg)
    return Body(text=text, new_text=new_text(text))
