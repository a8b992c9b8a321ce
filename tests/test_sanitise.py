"""postdesk.sanitise: hostile HTML in, nothing that runs, loads or submits out.

Each case is checked on the output parsed again with html.parser (what is
there, not what the string looks like): no element outside the allow-list,
no event handler, every href on an allowed scheme, every src a cid:, no
style value that can load or run.
"""

from __future__ import annotations

import logging
import time
from html.parser import HTMLParser

import pytest

from postdesk.sanitise import CSP, TAGS, cid_references, html_page, sanitise_html


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Collect:
    c = _Collect()
    c.feed(html)
    c.close()
    return c


def _assert_safe(out: str) -> None:
    for tag, attrs in _parse(out).tags:
        assert tag in TAGS, f"{tag} survived: {out!r}"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"handler {name} survived: {out!r}"
            assert name not in ("id", "class", "action", "formaction", "srcset", "background", "xlink:href"), out
            if name == "href":
                assert value.lower().startswith(("http:", "https:", "mailto:", "cid:")), out
            if name == "src":
                assert value.lower().startswith("cid:"), out
            if name == "style":
                low = value.lower()
                for bad in ("url(", "expression", "javascript", "\\", "@import", "behavior", "binding"):
                    assert bad not in low, out


HOSTILE = {
    "script": ("<p>hello</p><script>alert(document.cookie)</script>", "hello", "alert"),
    "script-uppercase-split": ("<SCRIPT>alert(1)</SCRIPT ><p>hi</p>", "hi", "alert"),
    "script-in-attribute-context": ('<p title="</p><script>alert(1)</script>">t</p>', "t", None),
    "onerror": ('<img src="cid:x" onerror="alert(1)">ok', "ok", None),
    "onload-body": ('<body onload="alert(1)"><p>body</p></body>', "body", None),
    "onmouseover-any-case": ('<b OnMouseOver="alert(1)">bold</b>', "bold", None),
    "javascript-link": ('<a href="javascript:alert(1)">click</a>', "click", None),
    "javascript-link-entity-tab": ('<a href="java&#x09;script:alert(1)">click</a>', "click", None),
    "javascript-link-leading-space": ('<a href="  javascript:alert(1)">click</a>', "click", None),
    "javascript-link-upper": ('<a href="JaVaScRiPt:alert(1)">click</a>', "click", None),
    "vbscript-link": ('<a href="vbscript:msgbox(1)">vb</a>', "vb", None),
    "data-link": ('<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">d</a>', "d", None),
    "css-expression": ('<div style="width: expression(alert(1)); color: red">e</div>', "e", None),
    "css-expression-escaped": ('<div style="color: \\65 xpression(alert(1))">x</div>', "x", None),
    "css-url": ('<p style="background-image: url(https://tracker.example/p.gif)">bg</p>', "bg", None),
    "css-import": ("<style>@import url(https://evil.example/x.css);</style><p>s</p>", "s", "@import"),
    "css-comment-trick": ('<p style="color: red; /**/width: expr/**/ession(alert(1))">c</p>', "c", None),
    "css-moz-binding": ('<p style="-moz-binding: url(https://evil.example/x.xml#x)">m</p>', "m", None),
    "remote-image": ('<img src="https://tracker.example/open.gif?u=alice" alt="logo">', "", None),
    "remote-image-protocol-relative": ('<img src="//tracker.example/open.gif">', "", None),
    "remote-srcset": ('<img src="cid:a" srcset="https://tracker.example/a.png 2x">', "", None),
    "background-attribute": ('<table background="https://tracker.example/bg.png"><tr><td>t</td></tr></table>', "t", None),
    "form": ('<form action="https://phish.example/login" method="post"><input name="password"><button>Log in</button></form>', "Log in", None),
    "form-controls-alone": ('<input type="image" src="https://x.example/a.png"><textarea>secret</textarea>', "", "secret"),
    "formaction": ('<button formaction="https://phish.example">go</button>', "go", None),
    "svg-script": ("<svg><script>alert(1)</script><text>svgtext</text></svg>after", "after", "alert"),
    "svg-onload": ('<svg onload="alert(1)"><circle r="1"/></svg>plain', "plain", None),
    "svg-use-xlink": ('<svg><use xlink:href="https://evil.example/sprite.svg#x"/></svg>u', "u", None),
    "svg-animate-href": ('<svg><a><animate attributeName="href" values="javascript:alert(1)"/><text>x</text></a></svg>ok', "ok", None),
    "math-href": ('<math><mi xlink:href="javascript:alert(1)">m</mi></math>ok', "ok", None),
    "data-image": ('<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">', "", None),
    "iframe": ('<iframe src="https://evil.example/"></iframe>after', "after", None),
    "object-embed": ('<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/x.swf">e', "e", None),
    "meta-refresh": ('<meta http-equiv="refresh" content="0;url=https://evil.example/">m', "m", None),
    "base-href": ('<base href="https://evil.example/"><a href="x">rel</a>', "rel", None),
    "link-stylesheet": ('<link rel="stylesheet" href="https://evil.example/x.css">l', "l", None),
    "relative-link": ('<a href="/account/delete">r</a>', "r", None),
    "id-class": ('<p id="login" class="btn-primary">c</p>', "c", None),
    "noscript-mxss": ('<noscript><p title="</noscript><img src=x onerror=alert(1)>">', "", None),
    "comment-conditional": ("<!--[if gte mso 9]><script>alert(1)</script><![endif]--><p>kept</p>", "kept", "alert"),
    "unclosed-attribute": ('<a href="https://ok.example/ onclick="alert(1)">u</a>', "u", None),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile(name: str):
    html, keep, gone = HOSTILE[name]
    out = sanitise_html(html)
    _assert_safe(out)
    text = "".join(_parse(out).text)
    if keep:
        assert keep in text, f"{name}: lost the text {keep!r}: {out!r}"
    if gone:
        assert gone not in out, f"{name}: {gone!r} survived: {out!r}"


def test_links_get_rel_and_keep_allowed_targets():
    out = sanitise_html('<a href="https://example.com/a?b=1">w</a> <a href="mailto:x@example.com">m</a> <a href="cid:part1">c</a>')
    anchors = [attrs for tag, attrs in _parse(out).tags if tag == "a"]
    assert [a["href"] for a in anchors] == ["https://example.com/a?b=1", "mailto:x@example.com", "cid:part1"]
    assert all(a["rel"] == "noopener noreferrer nofollow" for a in anchors)


def test_formatting_survives():
    html = (
        '<html><head><style>p {color: red}</style><title>Subject</title></head><body>'
        '<p style="color: #333; font-weight: bold; position: absolute">Hello <b>bold</b> <i>it</i></p>'
        '<table border="1" cellpadding="3"><tr><th colspan="2">Head</th></tr><tr><td>a</td><td>b</td></tr></table>'
        '<ul><li>one</li><li>two</li></ul><blockquote type="cite">quoted</blockquote>'
        '<img src="cid:image001.png@01DB40E1" alt="screenshot" width="200"></body></html>'
    )
    out = sanitise_html(html)
    _assert_safe(out)
    tags = [t for t, _ in _parse(out).tags]
    for t in ("p", "b", "i", "table", "th", "td", "ul", "li", "blockquote", "img"):
        assert t in tags, f"{t} lost: {out!r}"
    p_style = next(a for t, a in _parse(out).tags if t == "p")["style"]
    assert "font-weight" in p_style and "position" not in p_style
    assert "Subject" not in out and "color: red" not in out  # head content is not body text
    img = next(a for t, a in _parse(out).tags if t == "img")
    assert img == {"src": "cid:image001.png@01DB40E1", "alt": "screenshot", "width": "200"}


def test_bad_input_gives_empty_or_text():
    assert sanitise_html("") == ""
    assert sanitise_html(None) == ""  # type: ignore[arg-type]
    assert sanitise_html("plain & simple") == "plain &amp; simple"
    # raw 8-bit bytes read with surrogateescape cannot cross into Rust; they are replaced
    assert "caf" in sanitise_html("<p>caf\udce9</p>")


def test_idempotent():
    html = "".join(h for h, _, _ in HOSTILE.values())
    once = sanitise_html(html)
    assert sanitise_html(once) == once


def test_cid_references():
    out = sanitise_html('<img src="cid:a@b"><img src="https://x/y.png"><p><img src=\'cid:c%40d\'></p><img src="cid:a@b">')
    assert cid_references(out) == ["a@b", "c@d"]
    assert cid_references("") == []


def test_html_page_forbids_remote_loads():
    page = html_page("<p>hi</p>", title='<script>"x"</script>')
    assert "default-src 'none'" in CSP and "img-src data:" in CSP
    assert f'content="{CSP}"' in page
    assert "<script>" not in page  # the title is escaped
    assert page.startswith("<!DOCTYPE html>") and "<p>hi</p>" in page


# --- Markup that would cost the parser too long -------------------------------
# html5ever is quadratic on deep nesting and a few other shapes (see
# postdesk.html_cost, MAX_STACK_STEPS and the limits beside it): such markup is
# shown as text instead.  Times are compared with flat markup of the same
# size, never with a number of seconds.


def _timed(html: str) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(2):
        t = time.perf_counter()
        out = sanitise_html(html)
        best = min(best, time.perf_counter() - t)
    return best, out


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_deep_nesting_costs_about_what_flat_markup_does(n: int, caplog):
    flat_time, _ = _timed("<div></div>" * n)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="postdesk.sanitise"):
        nested_time, out = _timed("<div>" * n + "deep <b>text</b> &lt;img src=x onerror=alert(1)&gt;<script>alert(2)</script>" + "</div>" * n)
    assert nested_time < 20 * flat_time, (nested_time, flat_time)
    _assert_safe(out)
    assert [t for t, _ in _parse(out).tags] == ["pre"]
    assert "".join(_parse(out).text) == "deep text <img src=x onerror=alert(1)>"
    assert "alert(2)" not in out
    reduced = [r for r in caplog.records if "shown as text" in r.getMessage()]
    assert len(reduced) == 2 and all(r.levelno == logging.INFO for r in reduced)  # once a call
    assert "nested too deep" in reduced[0].getMessage()
    assert sanitise_html(out) == out


COSTLY = {
    # shape: (markup, what the log line says, or says one of: a|b)
    "nested-lists": ("<ul><li>" * 5000 + "x", "nested too deep"),
    "nested-optgroups": ("<optgroup><input>" * 5000, "nested too deep"),
    "nested-ruby": ("<rtc><td>" * 5000, "nested too deep"),
    "nested-in-math": ("<math>" + "<tr></table>" * 5000, "nested too deep"),
    "recreated-in-math": ("<math><mi>" + "".join(f"</h3></font><h3><rp><font size={i}>" for i in range(1000)), "re-create|nested|formatting"),
    "unclosed-bold-alike-but-one-attribute": ("".join(f"<b title={i}>" for i in range(3000)) + "x", "formatting"),
    "bold-with-many-attributes": ("".join("<b " + " ".join(f"a{j}" for j in range(50)) + f" x={i}>" for i in range(400)), "formatting"),
    "misnested-bold-recreated": ("<div>" + "".join(f"<b title={i}>" for i in range(200)) + "</div>" + "<div>x</div>" * 2000, "re-create|nested"),
    "attributes-on-one-tag": ("<p " + " ".join(f"a{j}" for j in range(20_000)) + ">x</p>", "attributes"),
    "many-tags": ("<span>x</span>" * 20_000, "tags"),
    # A closing tag the parser does not see does not count as closing.
    "close-in-comment": ("<div><!--</div>-->" * 5000, "nested too deep"),
    "close-in-attribute": ('<div title="</div>">' * 5000, "nested too deep"),
    "close-in-style": ("<div><style></div></style>" * 5000, "nested too deep"),
    "close-across-object": ("<div>" * 3000 + "<object>" + "</div>" * 3000 + "</object>" + "<p>x</p>" * 3000, "nested too deep"),
    "close-across-special": ("<span><div></span>" * 5000, "nested too deep"),
}


@pytest.mark.parametrize("name", sorted(COSTLY))
def test_costly_shapes_are_shown_as_text(name: str, caplog):
    html, why = COSTLY[name]
    flat_time, _ = _timed("<p>x</p>" * (len(html) // 8))
    with caplog.at_level(logging.INFO, logger="postdesk.sanitise"):
        costly_time, out = _timed(html)
    assert costly_time < 20 * flat_time, (costly_time, flat_time)
    _assert_safe(out)
    assert set(t for t, _ in _parse(out).tags) <= {"pre"}
    messages = [r.getMessage() for r in caplog.records]
    assert messages and all("shown as text" in m and any(w in m for w in why.split("|")) for m in messages), messages


def test_ordinary_markup_is_parsed():
    # A long newsletter-like table, sloppy the usual ways (unclosed <p>, <li>,
    # <td>, <font> around blocks), quoted replies nested 60 deep, 17,000 tags.
    row = '<tr><td width="30%"><font face="Arial" size="2"><b>Item {i}</b></font><td><p>one<p>two<ul><li>a<li>b</ul><a href="https://example.com/{i}"><div>block link</div></a>'
    rows = "".join(row.format(i=i) for i in range(1000))
    thread = '<blockquote type="cite"><div dir="ltr">' * 60 + "<p>oldest</p>" + "</div></blockquote>" * 60
    html = f'<html><head><style>p {{}}</style></head><body><font color="#333"><table border="1">{rows}</table>{thread}</font></body></html>'
    out = sanitise_html(html)
    assert "<pre" not in out
    assert out.count("<tr>") == 1000 and out.count("<blockquote") == 60
