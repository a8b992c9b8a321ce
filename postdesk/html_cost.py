"""What html5ever (inside nh3) would cost on a piece of markup, bounded before it runs.

html5ever is quadratic on some markup, and mail is up to 2 MB of it
(filter/htmlbody.py MAX_HTML), parsed on the SMTP session's thread, again in
the notifier and in ``ticket show --html``.  Measured here (nh3 0.3.8):
- most start tags walk the stack of open elements: 10,000 nested <div> took
  0.28 s, 100,000 took 30 to 70 s, so 2 MB would take about 20 minutes;
- a new <b>, <font>... is compared, attributes cloned and sorted, with each
  one of its name still open: 10,000 unclosed <b title=N> took 3.3 s, 2,000
  with 100 attributes each 24 s;
- formatting elements closed by another element's end tag are re-created at
  the next text: 65 KB gave 37 MB of output and 0.5 GB of memory;
- each attribute is checked against the tag's others: 50,000 on one tag, 0.8 s.
So before nh3, one pass over the tags (``check``) models the parser's stack
and its formatting elements closely enough to bound each of these from above,
and past a limit the markup is not parsed but shown as text (``as_text``).  At
the limits the costliest shapes found (by hand and by random search) take
0.05 to 0.15 s here; 20,000 flat tags 0.1 to 0.3 s, mostly this pass and
nh3's linear work.  Real mail is far below them (tests/data/mail: at most 63
tags, 5 deep).
"""

from __future__ import annotations

import html as _html
import re

MAX_TAGS = 20_000  # tags and comments; also bounds this pass (2-3 us a tag)
MAX_ATTRIBUTES = 100  # on one tag
MAX_STACK_STEPS = 8_000_000  # the open elements summed over all tags (7-15 ns each)
MAX_FORMATTING_STEPS = 1_000_000  # a formatting element's comparisons with open ones of its name, times attributes (40-120 ns)
MAX_REOPENED = 40_000  # formatting elements the parser may re-create (about 1.2 us each)

_WS = "\t\n\f\r "
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_COMMENT = re.compile(r"<!--(?:-?>|.*?--!?>)", re.S)
_BOGUS_COMMENT = re.compile(r"<(?:!|\?|/(?![A-Za-z]))[^>]*+>")
# A tag as the tokenizer reads it: quoted values may hold '>' or '<', an
# unquoted one runs to white space or '>' (possessive: no backtracking).
_ATTR = rf"""[^{_WS}/>][^{_WS}/>=]*+(?>[{_WS}]*+=[{_WS}]*+(?>"[^"]*+"|'[^']*+'|[^{_WS}>]*+))?+"""
# A whole tag, or the start of anything else that is not text.
_TOKEN = re.compile(rf"<(/?)([A-Za-z][^{_WS}/>]*+)((?>[{_WS}/]++|{_ATTR})*+)>|<[!?/A-Za-z]")
_ATTRIBUTE = re.compile(_ATTR)
_RAW_END = {n: re.compile(rf"</{n}[{_WS}/>]", re.I | re.A) for n in "iframe noembed noframes noscript script style textarea title xmp".split()}

_VOID = frozenset("area base basefont bgsound br col embed frame hr image img input keygen link meta param source track wbr".split())
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())
_NOT_PUSHED = frozenset("html head body".split())
# Where the parser's walks down the stack stop; svg, math and select are
# counted everywhere, so that nothing is taken as closed across them.
_SCOPE = frozenset("applet caption html table td th marquee object template svg math select mi mo mn ms mtext annotation-xml foreignobject desc title".split())
_TABLE_SCOPE = frozenset("html table template svg math select".split())
_SPECIAL = _SCOPE | frozenset(
    "article aside blockquote button center colgroup dd details dir dl dt fieldset figcaption figure footer form frameset h "
    "header hgroup iframe isindex li listing main menu nav noembed noframes noscript ol plaintext pre script search section style "
    "summary tbody textarea tfoot thead title tr ul xmp".split()
)  # and address, div, p (_ADP): an <li>, <dd> or <dt> closes across those
_ADP = frozenset({"address", "div", "p"})
_CLOSES_P = frozenset(
    "address article aside blockquote center details dialog dir div dl fieldset figcaption figure footer form h header "
    "hgroup hr li dd dt listing main menu nav ol p pre search section summary ul xmp plaintext".split()
)
_SCOPED_END = frozenset(
    "address article aside blockquote button center details dialog dir div dl fieldset figcaption figure footer header "
    "hgroup listing main menu nav ol pre search section summary ul applet marquee object dd dt h".split()
)
_TABLE_END = frozenset("table tbody thead tfoot tr td th caption colgroup".split())
_CLOSES_CELL = frozenset("td th tr tbody thead tfoot caption colgroup col".split())
# <p>, <li>, <td>... : the parser closes them by itself, and none nests in
# another without some element outside this list in between.
_IMPLIED = frozenset("caption colgroup dd dt li option p tbody td tfoot th thead tr".split())
_MARKERS = frozenset("applet caption marquee object td th template".split())
# Start tags that may close elements (or open a marker) besides those in _CLOSES_P.
_START_RULES = _CLOSES_P | _CLOSES_CELL | _MARKERS | frozenset("a nobr button table select input keygen textarea option optgroup".split())


class TooCostly(Exception):
    pass


def check(html: str) -> None:
    """Raise TooCostly, saying why, if html5ever might spend too long on ``html``.

    A model of the parser's stack of open elements: an entry for each element
    pushed, dropped only where the parser surely closes it (see close());
    formatting elements stay counted as "active" until surely closed or
    dropped the parser's way (at most three alike).  The tokens are read as
    html5ever reads them (comments, quoted attributes, <style> and the like),
    so that no closing tag is seen that the parser does not see.
    """
    names: list[str | None] = []  # an entry for each element pushed; None once surely closed
    where: dict[str, list[int]] = {}  # name -> its open entries, in order
    order: list[int] = []  # open entries (closed ones dropped lazily)
    scope: list[int] = []  # open entries by kind, for "is one of these above it?"
    table: list[int] = []
    special: list[int] = []  # _SPECIAL
    adp: list[int] = []  # address, div, p
    button: list[int] = []
    lists: list[int] = []
    active: dict[int, int] = {}  # active formatting entry -> its number of attributes
    fcount: dict[str, int] = {}  # name -> its active entries, their attributes
    fattrs: dict[str, int] = {}
    alike: dict[str, tuple[int, list[int]]] = {}  # name and attributes -> (epoch, active entries)
    epoch = depth = formatting = pending = tags = steps = fsteps = reopened = 0

    def top(ids: list[int]) -> int:
        while ids and names[ids[-1]] is None:
            ids.pop()
        return ids[-1] if ids else -1

    def last(*ns: str) -> int:  # the topmost open entry of these names, -1 for none
        i = -1
        for n in ns:
            ids = where.get(n)
            if ids and ids[-1] > i:
                i = ids[-1]
        return i

    def deactivate(i: int, name: str) -> None:
        nonlocal formatting
        formatting -= 1
        fcount[name] -= 1
        fattrs[name] -= active.pop(i)

    def drop(i: int) -> None:
        nonlocal depth
        name = names[i]
        assert name is not None
        names[i] = None
        where[name].pop()
        depth -= 1
        if i in active:
            deactivate(i, name)

    def close(i: int, *blockers: list[int]) -> None:
        # The parser closes i (and all above it) if no blocker is above it.
        # Only the <p>, <li>, <td>... left open just above it are taken as
        # closed with it: those cannot nest on their own, so this errs by a
        # few at most where the parser's stack differs from the model's.
        if i < 0:
            return
        for b in blockers:
            if top(b) > i:
                return
        above: list[int] = []
        for j in reversed(order[-16:] if not (where.get("svg") or where.get("math")) else ()):
            if j == i:
                for j in above:
                    drop(j)
                break
            n = names[j]
            if n is not None:
                if n not in _IMPLIED:
                    break
                above.append(j)
        drop(i)

    def check() -> None:
        if tags > MAX_TAGS:
            raise TooCostly(f"more than {MAX_TAGS} tags")
        if steps > MAX_STACK_STEPS:
            raise TooCostly(f"nested too deep (more than {MAX_STACK_STEPS} open-element steps)")
        if fsteps > MAX_FORMATTING_STEPS:
            raise TooCostly(f"more than {MAX_FORMATTING_STEPS} formatting element comparisons")
        if reopened > MAX_REOPENED:
            raise TooCostly(f"more than {MAX_REOPENED} formatting elements to re-create")

    pos = 0
    while (m := _TOKEN.search(html, pos)) is not None:
        check()
        lt = m.start()
        if lt > pos:  # text: formatting elements closed before are re-created
            steps += depth + formatting + pending * depth
            reopened += pending
            pending = 0
        tags += 1
        if m[2] is None:  # not a whole tag
            c = html[lt + 1]
            if html.startswith("<!--", lt):
                t = _COMMENT.match(html, lt)
            elif c == "!" or c == "?" or (c == "/" and html[lt + 2 : lt + 3] not in _LETTERS):
                if html.startswith("<![CDATA[", lt) and (where.get("svg") or where.get("math")):
                    raise TooCostly("CDATA in svg or math")
                t = _BOGUS_COMMENT.match(html, lt)
            else:
                t = None
            if t is None:
                break  # an unfinished tag or comment: the rest is inside it
            pos = t.end()
            continue
        pos = m.end()
        end, name, attrs = m.group(1, 2, 3)
        name = name.lower() if name.isascii() else name.translate(_ASCII_LOWER)  # as the parser: "K" is not "k"
        if len(name) == 2 and name[0] == "h" and name[1] in "123456":
            name = "h"
        elif name == "image":
            name = "img"
        k = len(_ATTRIBUTE.findall(attrs)) if attrs and (name in _FORMATTING or len(attrs) > 2 * MAX_ATTRIBUTES) else 0
        if k > MAX_ATTRIBUTES:
            raise TooCostly(f"more than {MAX_ATTRIBUTES} attributes on a tag")
        steps += depth + formatting
        if end:
            ids = where.get(name)
            if not ids:
                if formatting and name in ("p", "tbody", "tr"):  # ones the parser may have made itself
                    pending = formatting
                continue
            i = ids[-1]
            if formatting:
                pending = formatting
            if name in _FORMATTING and (where.get("svg") or where.get("math")):
                steps += 7 * depth  # in svg or math html5ever may leave it active (measured)
            elif top(order) == i and name != "form":
                close(i)  # the current node
            elif name in _FORMATTING:
                before = depth
                close(i, special, adp)  # with a block inside it the parser re-parents: nothing is sure
                if depth == before:
                    steps += 7 * depth  # and it may walk the stack eight times
            elif name == "p":
                close(i, scope, button)
            elif name == "li":
                close(i, scope, lists)
            elif name in _SCOPED_END:
                close(i, scope)
            elif name in _TABLE_END:
                close(i, table)
            elif name == "template":
                close(i)
            elif name != "form" and name != "select":
                close(i, special, adp)
        else:
            steps += pending * depth
            reopened += pending
            pending = 0
            foreign = where.get("svg") or where.get("math")  # where these rules do not hold
            if name in _CLOSES_P and where.get("p") and not foreign:
                close(last("p"), scope, button)
            if name in _START_RULES and not foreign:
                if name == "li":
                    close(last("li"), special)
                elif name == "dd" or name == "dt":
                    close(last("dd", "dt"), special)
                elif name == "h" or name == "option" or name == "optgroup":
                    # "If the current node is ...": not sure if the parser may
                    # have put a formatting element back on top.
                    shut = "h" if name == "h" else "option"
                    if not formatting and where.get(shut) and top(order) == where[shut][-1]:
                        close(top(order))
                elif name == "a" or name == "nobr":
                    close(last(name), special, adp)
                elif name == "button":
                    close(last("button"), scope)
                elif name in _CLOSES_CELL:
                    close(last("td", "th"), table)
                    if name != "td" and name != "th":
                        close(last("tr"), table)
                        if name != "tr":
                            close(last("tbody", "thead", "tfoot"), table)
            if name in _MARKERS:
                epoch += 1
            if formatting and (foreign or name in _START_RULES):
                pending = formatting
            if (name in _VOID or name in _NOT_PUSHED) and not foreign:  # in svg, <param> is an element
                continue
            if name in _CLOSES_CELL and not (foreign or where.get("table") or where.get("template")):
                continue  # ignored outside a table
            if name in _RAW_END or name == "plaintext":
                if foreign:
                    raise TooCostly(f"<{name}> in svg or math")
                e = _RAW_END[name].search(html, pos) if name != "plaintext" else None
                if e is None:
                    break  # the rest is its text
                if name == "script" and "<!--" in html[pos : e.start()]:
                    raise TooCostly("<!-- in a script")
                pos = e.start()
            i = len(names)
            if name in _FORMATTING:
                fsteps += fcount.get(name, 0) * (1 + k) + fattrs.get(name, 0)
                # The parser keeps at most three alike after the last marker.
                key = name + " " + attrs.strip()
                e_ids = alike.get(key)
                same = [j for j in e_ids[1] if j in active] if e_ids and e_ids[0] == epoch else []
                if len(same) >= 3:
                    deactivate(same.pop(0), name)
                same.append(i)
                alike[key] = (epoch, same)
                active[i] = k
                fcount[name] = fcount.get(name, 0) + 1
                fattrs[name] = fattrs.get(name, 0) + k
                formatting += 1
            names.append(name)
            where.setdefault(name, []).append(i)
            order.append(i)
            depth += 1
            if name in _SPECIAL:
                special.append(i)
                if name in _SCOPE:
                    scope.append(i)
                    if name in _TABLE_SCOPE:
                        table.append(i)
                elif name == "button":
                    button.append(i)
                elif name == "ol" or name == "ul":
                    lists.append(i)
            elif name in _ADP:
                adp.append(i)
    check()


_DROPPED = "head iframe math noscript object script select style svg template textarea title xml".split()
_DROP_START = re.compile(rf"<(?=[himnostxHIMNOSTX])({'|'.join(_DROPPED)})(?=[{_WS}/>])", re.I)
_DROP_END = {n: re.compile(f"</{n}", re.I) for n in _DROPPED}
_LINE_TAG = re.compile(rf"<(?=[/bdhloptuBDHLOPTU])/?(?:br|p|div|tr|li|dt|dd|h[1-6]|blockquote|table|ul|ol|pre|hr)(?=[{_WS}/>])[^<>]*>", re.I)
_CELL_TAG = re.compile(rf"<(?=[tT])t[dhDH](?=[{_WS}/>])[^<>]*>")
_ANY_TAG = re.compile(r"<[^<>]*>")


def as_text(html: str) -> str:
    """The text of ``html``, escaped in a <pre>: nothing is parsed, and each step is linear."""
    kept: list[str] = []
    pos = 0
    while (m := _DROP_START.search(html, pos)) is not None:  # code, not text
        kept.append(html[pos : m.start()])
        end = _DROP_END[m[1].lower()].search(html, m.end())
        pos = len(html) if end is None else end.start()
    kept.append(html[pos:])
    text = re.sub(rf"[{_WS}]+", " ", "".join(kept))
    text = _ANY_TAG.sub("", _CELL_TAG.sub(" ", _LINE_TAG.sub("\n", text)))
    text = re.sub(r"\n{3,}", "\n\n", re.sub(r" *\n *", "\n", _html.unescape(text))).strip()
    return f'<pre style="white-space: pre-wrap">{_html.escape(text)}</pre>' if text else ""
