"""HTML mail -> readable plain text, with the standard library's html.parser.

Good enough for the ticket history and for finding the new text: block
elements become line breaks, list items get a dash, links keep their target,
``<blockquote>`` content is prefixed with "> " so the quote stripper treats
it like a quoted plain-text reply, and script/style/head are dropped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {
    "p", "div", "br", "tr", "table", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "pre", "hr", "blockquote", "section", "article", "header", "footer", "address", "dl", "dt", "dd",
}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote", "pre"}
_SKIP = {"script", "style", "head", "title", "template"}
_WS = re.compile(r"[ \t\r\n\f\v\u00a0]+")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip = 0
        self.quote = 0
        self.pre = 0
        self.href: list[str] = []

    def _newline(self, blank: bool = False) -> None:
        line = "".join(self.current)
        if not self.pre:
            line = _WS.sub(" ", line).strip()
        prefix = "> " * self.quote
        if line or self.pre:
            self.lines.append((prefix + line).rstrip())
        if blank and self.lines and self.lines[-1]:
            self.lines.append(prefix.rstrip())
        self.current = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if tag == "br" and not "".join(self.current).strip():
            self._newline(blank=True)  # <br><br>: a paragraph break
        elif tag in _BLOCK:
            self._newline()
        if tag == "blockquote":
            self.quote += 1
        elif tag == "pre":
            self.pre += 1
        elif tag == "li":
            self.current.append("- ")
        elif tag == "a":
            self.href.append(dict(attrs).get("href") or "")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.current.append(f"[{alt}]")
        elif tag in ("td", "th"):
            self.current.append(" ")

    def handle_startendtag(self, tag: str, attrs) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "hr", "img"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag == "a" and self.href:
            href = self.href.pop()
            text = "".join(self.current)
            if href and not href.startswith(("mailto:", "#", "cid:")) and href not in text:
                self.current.append(f" <{href}>")
        if tag in _BLOCK:
            self._newline(blank=tag in _PARAGRAPH)
        if tag == "blockquote" and self.quote:
            self.quote -= 1
        elif tag == "pre" and self.pre:
            self.pre -= 1

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            parts = data.split("\n")
            for i, piece in enumerate(parts):
                if i:
                    self._newline()
                self.current.append(piece)
        else:
            self.current.append(data)


# html.parser is pure Python and superlinear on some hostile input ("<!" x 400k
# takes seconds); past this size a linear tag stripper does the job instead.
MAX_HTML = 128 * 1024
_TAG = re.compile(r"<[^<>]{0,10000}>")


def _drop_elements(html: str, names: tuple[str, ...] = ("script", "style", "head")) -> str:
    """Remove <script>...</script> etc. with plain finds (one pass, linear)."""
    lower = html.lower()
    out: list[str] = []
    pos = 0
    # Next occurrence of each opening tag, refreshed only once passed, so a
    # name that never occurs is searched for once, not once per element.
    nxt = {n: lower.find("<" + n) for n in names}
    while True:
        for n in names:
            if 0 <= nxt[n] < pos:
                nxt[n] = lower.find("<" + n, pos)
        starts = [(i, n) for n, i in nxt.items() if i >= 0]
        if not starts:
            break
        i, name = min(starts)
        end = lower.find("</" + name, i)
        out.append(html[pos:i])
        if end < 0:
            pos = len(html)
            break
        close = lower.find(">", end)
        pos = len(html) if close < 0 else close + 1
    out.append(html[pos:])
    return " ".join(out)


def _strip_tags(html: str) -> str:
    from html import unescape

    text = _drop_elements(html)
    text = re.sub(r"(?i)<(?:br|/p|/div|/tr|/li|/h[1-6])\b[^<>]{0,1000}>", "\n", text)
    text = unescape(_TAG.sub(" ", text))
    lines = [_WS.sub(" ", line).strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line)


def html_to_text(html: str) -> str:
    """Readable text of an HTML document; never raises."""
    if len(html) > MAX_HTML:
        try:
            return _strip_tags(html)
        except Exception:
            return html
    conv = _Converter()
    try:
        conv.feed(html)
        conv.close()
    except Exception:
        # html.parser is forgiving; if it still gives up, keep what we have.
        pass
    conv._newline()
    out: list[str] = []
    for line in conv.lines:
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out).strip("\n")
