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

Any sender's mail reaches this code, so its work is bounded whatever the
HTML: walks are iterative or bounded by ``MAX_DEPTH`` (markup nested
deeper is flattened: its text kept, its tags dropped), a history check
looks at most ``MAX_SCAN_NODES`` nodes and all of them together at most
``MAX_SCAN_WORK`` (past that nothing more is recognised as history), and
HTML of more than ``MAX_NODES`` nodes gives "" (the mail goes as text).
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from html.parser import HTMLParser

from postdesk.filter.body import _FROM, _ORIGINAL, _WROTE, MAX_LINE_CHECK
from postdesk.mail import REPLY_MARKER

VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_BLOCK = frozenset(("div", "p", "tr", "li", "hr"))  # a line break after their text
_BORDER_LEFT = re.compile(r"border-left\s*:", re.I)
_BORDER_TOP = re.compile(r"border-top\s*:", re.I)
_SPACE = re.compile(r"\s+")

# Bounds on the work one mail can cause (any sender's HTML comes here; an
# exception or minutes spent here held up the notifier's whole batch).
# Elements and text nodes in one message's HTML; more goes as text only.  A
# 1 MB mail (policy.MAX_HTML) of ordinary markup has some 20,000-60,000.
MAX_NODES = 200_000
# Elements nested deeper are flattened into the deepest one kept (their text
# stays, their tags go): the cut recurses once per level and must stay far
# below Python's recursion limit.  Real mail nests some 10-40 levels.
MAX_DEPTH = 150
# Nodes one history check (a first line, an attribution line) looks at: the
# header after an Outlook separator is a few nodes on; a separator followed
# by thousands of empty ones is not one.
MAX_SCAN_NODES = 200
# Nodes all history checks of one message look at together; past this the
# rest of the HTML is kept as it is.  About a second of work at most.
MAX_SCAN_WORK = 1_000_000
# Characters of one text node a history check reads (from its start, or its
# end for an attribution line): the lines looked for are much shorter.
_TEXT_SCAN = 8 * MAX_LINE_CHECK


class _TooLarge(Exception):
    pass


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
        self.nodes = 0
        self.flattened: dict[str, int] = {}  # open tags dropped below MAX_DEPTH, by name

    def _add(self, node: Node) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge
        self.stack[-1].children.append(node)

    def handle_starttag(self, tag, attrs):
        if tag not in VOID and len(self.stack) > MAX_DEPTH:
            self.flattened[tag] = self.flattened.get(tag, 0) + 1
            return
        node = Node(tag, list(attrs))
        self._add(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self._add(Node(tag, list(attrs)))

    def handle_endtag(self, tag):
        if self.flattened.get(tag):
            self.flattened[tag] -= 1
            return
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                self.flattened.clear()  # they were inside what just closed
                return

    def handle_data(self, data):
        self._add(Node("", text=htmlmod.escape(data, quote=False)))

    def handle_entityref(self, name):
        self._add(Node("", text=f"&{name};"))

    def handle_charref(self, name):
        self._add(Node("", text=f"&#{name};"))


def _serialise(root: Node, out: list[str]) -> None:
    """The HTML of ``root``'s children (iterative: no recursion limit)."""
    stack: list[tuple[Node, Iterator[Node]]] = [(root, iter(root.children))]
    while stack:
        parent, children = stack[-1]
        node = next(children, None)
        if node is None:
            stack.pop()
            if parent is not root and parent.tag not in VOID:
                out.append(f"</{parent.tag}>")
        elif not node.tag:
            out.append(node.text)
        else:
            attrs = "".join(f' {k}="{htmlmod.escape(v or "", quote=True)}"' for k, v in node.attrs)
            out.append(f"<{node.tag}{attrs}>")
            stack.append((node, iter(node.children)))


def _is_quote(node: Node) -> bool:
    return node.tag == "blockquote" and (node.attr("type").lower() == "cite" or bool(_BORDER_LEFT.search(node.attr("style"))))


def _chunks(nodes: Sequence[Node]) -> Iterator[str]:
    """The text of ``nodes`` in document order, a line break for ``<br>`` and block ends (iterative)."""
    stack: list[Iterator[Node]] = [iter(nodes)]
    blocks = [False]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            if blocks.pop():
                yield "\n"
        elif not node.tag:
            yield htmlmod.unescape(node.text)
        elif node.tag == "br":
            yield "\n"
        else:
            stack.append(iter(node.children))
            blocks.append(node.tag in _BLOCK)


def _line(parts: list[str]) -> str:
    return "".join(parts).strip().split("\n", 1)[0].strip()[:MAX_LINE_CHECK]


class _Cutter:
    """One message's cut, its history checks sharing one work budget (``MAX_SCAN_WORK``)."""

    def __init__(self) -> None:
        self.work = MAX_SCAN_WORK
        self.blank: dict[int, bool] = {}

    def first_line(self, nodes: Sequence[Node], start: int, stop: int) -> tuple[str, int]:
        """The first non-blank line of the text of ``nodes[start:stop]`` (at
        most MAX_LINE_CHECK characters of it, at most MAX_SCAN_NODES nodes
        looked at), and the index of the node it starts in, or when there is
        none, of the last node looked at: the same line is the first of
        ``nodes[j:stop]`` for every ``j`` from ``start`` to that index."""
        parts: list[str] = []
        size = visits = 0
        begin = k = start
        for k in range(start, stop):
            stack: list[Iterator[Node]] = [iter((nodes[k],))]
            blocks = [False]
            while stack:
                node = next(stack[-1], None)
                if node is None:
                    stack.pop()
                    chunk = "\n" if blocks.pop() else ""
                else:
                    visits += 1
                    self.work -= 1
                    if visits > MAX_SCAN_NODES or self.work < 0:
                        return _line(parts), (begin if parts else k)
                    if not node.tag:
                        text = node.text
                        if len(text) > _TEXT_SCAN:
                            text = (text if parts else text.lstrip())[:_TEXT_SCAN]
                        chunk = htmlmod.unescape(text)
                    elif node.tag == "br":
                        chunk = "\n"
                    else:
                        stack.append(iter(node.children))
                        blocks.append(node.tag in _BLOCK)
                        continue
                if not chunk:
                    continue
                if not parts:
                    if not chunk.strip():
                        continue  # blank before the line
                    chunk = chunk.lstrip()
                    begin = k
                parts.append(chunk)
                size += len(chunk)
                if "\n" in chunk or size > MAX_LINE_CHECK:
                    return _line(parts), begin
        return _line(parts), (begin if parts else k)

    def last_lines(self, node: Node) -> tuple[str, bool] | None:
        """The last non-blank line of ``node``'s text and whether it has
        others (None: no such line, or not one of a few hundred characters)."""
        rparts: list[str] = []
        size = visits = 0
        truncated = False
        stack: list[Iterator[Node]] = [iter((node,))]
        while stack:
            n = next(stack[-1], None)
            if n is None:
                stack.pop()
                continue
            visits += 1
            self.work -= 1
            if visits > MAX_SCAN_NODES or self.work < 0 or size > 2 * MAX_LINE_CHECK:
                truncated = True
                break
            if not n.tag:
                text = n.text
                if len(text) > _TEXT_SCAN:
                    text, truncated = text[-_TEXT_SCAN:], True
                chunk = htmlmod.unescape(text)
            elif n.tag == "br":
                chunk = "\n"
            else:
                chunk = "\n" if n.tag in _BLOCK else ""  # its line break comes after its text
                stack.append(reversed(n.children))
            rparts.append(chunk)
            size += len(chunk)
        segments = "".join(reversed(rparts)).splitlines()
        if truncated:
            segments = segments[1:]  # the first may be the end of a longer line
        lines = [ln.strip() for ln in segments if ln.strip()]
        if not lines:
            return None
        return lines[-1], truncated or len(lines) > 1

    def is_blank_text(self, node: Node) -> bool:
        key = id(node)
        if key not in self.blank:
            self.blank[key] = not node.text or node.text.isspace()
        return self.blank[key]

    def starts_history(self, children: list[Node], i: int, seen: list) -> bool:
        """Does the earlier message start at ``children[i]``?  (``seen``:
        the last first line looked for after a separator, and up to which
        index it holds, so a run of separators is read once.)"""
        node = children[i]
        if node.tag in ("div", "p") and _ORIGINAL.match(self.first_line(children, i, i + 1)[0]):
            return True
        separator = node.tag == "hr" or (node.tag == "div" and bool(_BORDER_TOP.search(node.attr("style"))))
        if not separator:
            return False
        if i > seen[1]:
            seen[0], seen[1] = self.first_line(children, i, len(children))
        return bool(_FROM.match(seen[0]))

    def cut(self, node: Node, depth: int = 0) -> bool:
        """Remove quotes below ``node``; True when the history started inside it
        (everything after is history too).  Recursive, but the tree is at
        most MAX_DEPTH deep (``_Builder``)."""
        kept: list[Node] = []
        children = node.children
        seen: list = ["", -1]
        for i, child in enumerate(children):
            if not child.tag:
                if REPLY_MARKER in htmlmod.unescape(child.text):
                    node.children = kept
                    return True
                kept.append(child)
                continue
            if _is_quote(child):
                self.drop_attribution(kept)
                continue
            if self.starts_history(children, i, seen):
                node.children = kept
                self.drop_attribution(kept)
                return True
            if depth < MAX_DEPTH and self.cut(child, depth + 1):
                kept.append(child)
                node.children = kept
                return True
            kept.append(child)
        node.children = kept
        return False

    def drop_attribution(self, kept: list[Node]) -> None:
        """Remove an "On ... wrote:" line (element or text) just before a removed quote."""
        while kept and not kept[-1].tag and self.is_blank_text(kept[-1]):
            kept.pop()
        while kept and kept[-1].tag == "br":
            kept.pop()
        if not kept:
            return
        last = kept[-1]
        found = self.last_lines(last)
        if found is None:
            return
        line, others = found
        if _WROTE.match(_SPACE.sub(" ", line)) and (not others or not last.tag):
            kept.pop()


@lru_cache(maxsize=64)  # an update to several customers and its team alert cut the same HTML
def new_html(html: str) -> str:
    """``html`` without its quoted history ("" when nothing is left but
    whitespace, or when it has more than MAX_NODES nodes)."""
    if not html:
        return ""
    builder = _Builder()
    try:
        builder.feed(html)
        builder.close()
    except _TooLarge:
        return ""
    _Cutter().cut(builder.root)
    out: list[str] = []
    _serialise(builder.root, out)
    result = "".join(out).strip()
    return result if any(c.strip() for c in _chunks(builder.root.children)) or "<img" in result else ""
