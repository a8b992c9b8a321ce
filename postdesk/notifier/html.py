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
from dataclasses import dataclass, field
from html.parser import HTMLParser

from postdesk.filter.body import _FROM, _ORIGINAL, _WROTE
from postdesk.mail import REPLY_MARKER

VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_BORDER_LEFT = re.compile(r"border-left\s*:", re.I)
_BORDER_TOP = re.compile(r"border-top\s*:", re.I)
_SPACE = re.compile(r"\s+")


@dataclass
class Node:
    tag: str  # "" for text
    attrs: list[tuple[str, str | None]] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    text: str = ""  # text nodes: already escaped as it came

    def attr(self, name: str) -> str:
        for k, v in self.attrs:
            if k == name:
                return v or ""
        return ""

    def plain(self) -> str:
        if not self.tag:
            return htmlmod.unescape(self.text)
        return "".join(c.plain() if c.tag != "br" else "\n" for c in self.children)


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


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _starts_history(node: Node, following: str) -> bool:
    """Does the earlier message start at ``node`` (``following``: the text from it on)?"""
    own = node.plain()
    if REPLY_MARKER in own:
        return True
    if node.tag in ("div", "p") and _ORIGINAL.match(_first_line(own)):
        return True
    separator = node.tag == "hr" or (node.tag == "div" and bool(_BORDER_TOP.search(node.attr("style"))))
    return separator and bool(_FROM.match(_first_line(following)))


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
        following = "".join(c.plain() for c in children[i:])
        if _starts_history(child, following):
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
    lines = [ln.strip() for ln in last.plain().splitlines() if ln.strip()]
    if lines and _WROTE.match(_SPACE.sub(" ", lines[-1])):
        if len(lines) == 1 or not last.tag:
            kept.pop()


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
    return result if _SPACE.sub("", builder.root.plain()) or "<img" in result else ""
