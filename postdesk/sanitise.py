"""HTML from mail, made safe to store, show and send on: an allow-list on nh3.

nh3 (the Rust library ammonia) parses with html5ever, the HTML5 parsing
algorithm browsers use, so what it keeps is what a browser would see.
Everything not listed here goes:

- elements: only formatting (text, lists, tables, images, links); script,
  style, svg, math, iframes, objects, forms and their controls are removed
  with their content; an unknown element keeps its text, not its tag;
- attributes: no event handlers (``on*``), no ``id``/``class`` (they would
  pick up the styles of the page that shows the mail); ``style`` is kept
  only for the properties in STYLE_PROPERTIES and never with ``url(``,
  ``expression(``, an escape or an ``@import``;
- URLs: ``<a href>`` only ``http:``, ``https:``, ``mailto:`` and ``cid:``;
  ``<img src>`` only ``cid:`` (an image from the mail itself): a remote
  image is a tracking pixel or a leak of who read the mail and when, and a
  ``data:`` URL can smuggle anything.  Relative URLs are dropped.  Links get
  ``rel="noopener noreferrer nofollow"``.

The API is one function, ``sanitise_html``; ``cid_references`` lists the
inline images a sanitised fragment uses, ``html_page`` wraps a fragment in a
standalone page whose Content-Security-Policy forbids every remote load.
"""

from __future__ import annotations

import html as _html
import logging
import re

import nh3

from postdesk import html_cost

log = logging.getLogger("postdesk.sanitise")

TAGS = frozenset(
    {
        "a", "abbr", "acronym", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center", "cite",
        "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font", "h1", "h2", "h3",
        "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp",
        "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
        "tr", "tt", "u", "ul", "var", "wbr",
    }
)  # fmt: skip

# Removed together with everything inside them (their text is code, not prose).
DROP_WITH_CONTENT = frozenset(
    {
        "script", "style", "svg", "math", "template", "noscript", "iframe", "frame", "frameset", "object",
        "embed", "applet", "title", "head", "select", "textarea", "option", "datalist", "xml", "meta",
    }
)  # fmt: skip

_COMMON = {"title", "lang", "dir", "align", "style"}
ATTRIBUTES: dict[str, set[str]] = {
    "*": _COMMON,
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border"},
    "table": {"border", "cellpadding", "cellspacing", "width", "summary"},
    "td": {"colspan", "rowspan", "valign", "width", "height", "nowrap"},
    "th": {"colspan", "rowspan", "valign", "width", "height", "scope"},
    "tr": {"valign"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "font": {"color", "face", "size"},
    "blockquote": {"type"},  # type="cite": how mail clients mark a quoted reply
    "hr": {"width", "size"},
}

STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
        "font-variant", "text-align", "text-decoration", "text-indent", "text-transform", "line-height",
        "letter-spacing", "white-space", "vertical-align", "margin", "margin-top", "margin-bottom",
        "margin-left", "margin-right", "padding", "padding-top", "padding-bottom", "padding-left",
        "padding-right", "border", "border-top", "border-bottom", "border-left", "border-right",
        "border-color", "border-style", "border-width", "border-collapse", "border-spacing", "width",
        "height", "max-width", "min-width", "list-style-type", "direction",
    }
)  # fmt: skip

LINK_SCHEMES = ("http:", "https:", "mailto:", "cid:")
IMAGE_SCHEMES = ("cid:",)
LINK_REL = "noopener noreferrer nofollow"

# Anything in a style value that can load, run or hide something: url() and
# image-set() load, expression() ran script in old IE, behavior/-moz-binding
# load code, a backslash escape can spell any of them past a plain search.
_BAD_STYLE = re.compile(r"url\s*\(|image-set|expression|behavior|binding|javascript|vbscript|@import|\\|/\*", re.IGNORECASE)
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]+")


def _url_ok(value: str, schemes: tuple[str, ...]) -> bool:
    # Browsers ignore controls and spaces inside a scheme ("java\tscript:").
    return _URL_NOISE.sub("", value).lower().startswith(schemes)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "href":
        return value if _url_ok(value, LINK_SCHEMES) else None
    if attribute == "src":
        return value if _url_ok(value, IMAGE_SCHEMES) else None
    if attribute == "style":
        return None if _BAD_STYLE.search(value) else value
    return value


def sanitise_html(html: str) -> str:
    """``html`` (a whole document or a fragment) as a safe HTML fragment.

    Never raises; "" for empty or unusable input.  Markup that would cost
    the parser too long (``postdesk.html_cost``) comes back as its text in a <pre>.
    """
    if not html or not isinstance(html, str):
        return ""
    # html5ever is fine with anything, but a lone surrogate (a raw 8-bit
    # byte read with surrogateescape) cannot cross into Rust.
    html = html.encode("utf-8", "replace").decode("utf-8")
    try:
        html_cost.check(html)
    except Exception as e:  # TooCostly; anything else would be a bug here, and nh3 is not given what was not checked
        log.info("HTML of %d characters shown as text, not parsed: %s", len(html), e)
        html = html_cost.as_text(html)
    try:
        out = nh3.clean(
            html,
            tags=set(TAGS),
            clean_content_tags=set(DROP_WITH_CONTENT),
            attributes={k: set(v) for k, v in ATTRIBUTES.items()},
            attribute_filter=_attribute_filter,
            strip_comments=True,
            link_rel=LINK_REL,
            url_schemes={s.rstrip(":") for s in LINK_SCHEMES},
            filter_style_properties=set(STYLE_PROPERTIES),
            url_relative="deny",
        )
    except Exception:  # nh3 raises only on bad options; keep the promise anyway
        return ""
    return out.strip()


_CID = re.compile(r"""\bsrc\s*=\s*["']?cid:([^"'\s>]+)""", re.IGNORECASE)


def cid_references(html: str) -> list[str]:
    """Content-IDs (without ``cid:`` and <>) that ``<img src="cid:...">`` uses, in order, once each."""
    from urllib.parse import unquote

    seen: list[str] = []
    for m in _CID.finditer(html or ""):
        cid = unquote(_html.unescape(m.group(1))).strip("<>")
        if cid and cid not in seen:
            seen.append(cid)
    return seen


# The page shows mail that came from outside: nothing from anywhere, images
# only from the page itself (data: after a caller inlines cid: images).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def html_page(fragment: str, title: str = "") -> str:
    """A standalone HTML page around an already sanitised fragment, with a strict CSP."""
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        '<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{_html.escape(title)}</title>\n"
        "</head>\n<body>\n"
        f"{fragment}\n"
        "</body>\n</html>\n"
    )


__all__ = ["sanitise_html", "cid_references", "html_page", "CSP"]
