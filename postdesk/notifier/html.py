"""The new part of a message's HTML: its quoted history removed, as the text's is.

The store keeps each message's HTML sanitised (``postdesk.sanitise``: no
``id`` or ``class`` survive, ``style`` and ``blockquote type`` do), so the
quote is recognised by what is left.  Removed:

- ``<blockquote type="cite">``: Thunderbird, Apple Mail, K-9 and most
  webmail mark a quoted reply this way;
- a ``<blockquote>`` whose style draws a left border (Gmail's
  ``gmail_quote``, Yahoo's and Roundcube's quotes, once their classes
  are gone);
- from an element that starts the earlier message to the end: Outlook's
  separator (a ``<div>`` whose style has ``border-top``, as Outlook for
  Windows writes around its "From:/Sent:" block, or the ``<hr>`` Outlook
  on the web puts before its ``divRplyFwdMsg``) when the text after it
  starts with "From:" / "Von:" / "De :" (the filter's header words), an
  "-----Original Message-----" line, and our own reply marker;
- the attribution line left before a removed quote ("On ... wrote:",
  "Am ... schrieb ...:", ... as ``postdesk.filter.body`` knows them: the
  ``gmail_attr`` and ``moz-cite-prefix`` blocks).

The input is nh3's serialisation (balanced tags), so a small tree built
with the standard library's ``HTMLParser`` is enough; what comes out is
sanitised again by the caller before it is sent.
"""

from __future__ import annotations

import html as htmlmod
import re
from functools import lru_cache
from html.parser import HTMLParser

from postdesk.filter.body import _FROM, _ORIGINAL, _WROTE, MAX_LINE_CHECK
from postdesk.mail import REPLY_MARKER

VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_BORDER_LEFT = re.compile(r"border-left\s*:", re.I)
_BORDER_TOP = re.compile(r"border-top\s*:", re.I)
_SPACE = re.compile(r"\s+")


class Node:
    """An element (``tag``) or a text node (``tag`` "", ``text`` escaped as it came)."""

    __slots__ = ("tag", "attrs", "children", "text")

    def __init__(self, tag: str, attrs: list[tuple[str, str | None]] | None = None, text: str = ""):
        self.tag = tag
        self.attrs = attrs or []
        self.children: list[Node] = []
        self.text = text

    def attr(self, name: str) -> str:
        for k, v in self.attrs:
            if k == name:
                return v or ""
        return ""


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.root = Node("#root")
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, list(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, list(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(Node("", text=htmlmod.escape(data, quote=False)))

    def handle_entityref(self, name):
        self.stack[-1].children.append(Node("", text=f"&{name};"))

    def handle_charref(self, name):
        self.stack[-1].children.append(Node("", text=f"&#{name};"))


def _serialise(node: Node, out: list[str]) -> None:
    if not node.tag:
        out.append(node.text)
        return
    if node.tag != "#root":
        attrs = "".join(f' {k}="{htmlmod.escape(v or "", quote=True)}"' for k, v in node.attrs)
        out.append(f"<{node.tag}{attrs}>")
    for c in node.children:
        _serialise(c, out)
    if node.tag != "#root" and node.tag not in VOID:
        out.append(f"</{node.tag}>")


def _is_quote(node: Node) -> bool:
    return node.tag == "blockquote" and (node.attr("type").lower() == "cite" or bool(_BORDER_LEFT.search(node.attr("style"))))


def _chunks(nodes: list[Node]):
    """The text of ``nodes`` in document order, a line break for ``<br>`` and block ends."""
    for node in nodes:
        if not node.tag:
            yield htmlmod.unescape(node.text)
        elif node.tag == "br":
            yield "\n"
        else:
            yield from _chunks(node.children)
            if node.tag in ("div", "p", "tr", "li", "hr"):
                yield "\n"


def _first_line(nodes: list[Node]) -> str:
    """The first non-blank line of the text of ``nodes`` (at most MAX_LINE_CHECK characters looked at)."""
    seen = ""
    for chunk in _chunks(nodes):
        seen += chunk
        stripped = seen.lstrip()
        if "\n" in stripped or len(stripped) > MAX_LINE_CHECK:
            break
    return seen.strip().split("\n", 1)[0].strip()[:MAX_LINE_CHECK]


def _starts_history(children: list[Node], i: int) -> bool:
    """Does the earlier message start at ``children[i]``?"""
    node = children[i]
    if node.tag in ("div", "p") and _ORIGINAL.match(_first_line([node])):
        return True
    separator = node.tag == "hr" or (node.tag == "div" and bool(_BORDER_TOP.search(node.attr("style"))))
    return separator and bool(_FROM.match(_first_line(children[i:])))


def _cut(node: Node) -> bool:
    """Remove quotes below ``node``; True when the history started inside it
    (everything after is history too)."""
    kept: list[Node] = []
    children = node.children
    for i, child in enumerate(children):
        if not child.tag:
            if REPLY_MARKER in htmlmod.unescape(child.text):
                node.children = kept
                return True
            kept.append(child)
            continue
        if _is_quote(child):
            _drop_attribution(kept)
            continue
        if _starts_history(children, i):
            node.children = kept
            _drop_attribution(kept)
            return True
        if _cut(child):
            kept.append(child)
            node.children = kept
            return True
        kept.append(child)
    node.children = kept
    return False


def _drop_attribution(kept: list[Node]) -> None:
    """Remove an "On ... wrote:" line (element or text) just before a removed quote."""
    while kept and not kept[-1].tag and not kept[-1].text.strip():
        kept.pop()
    while kept and kept[-1].tag == "br":
        kept.pop()
    if not kept:
        return
    last = kept[-1]
    lines = [ln.strip() for ln in "".join(_chunks([last])).splitlines() if ln.strip()]
    if lines and _WROTE.match(_SPACE.sub(" ", lines[-1])):
        if len(lines) == 1 or not last.tag:
            kept.pop()


@lru_cache(maxsize=64)  # an update to several customers and its team alert cut the same HTML
def new_html(html: str) -> str:
    """``html`` without its quoted history ("" when nothing is left but whitespace)."""
    if not html:
        return ""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    _cut(builder.root)
    out: list[str] = []
    _serialise(builder.root, out)
    result = "".join(out).strip()
    return result if any(c.strip() for c in _chunks(builder.root.children)) or "<img" in result else ""
