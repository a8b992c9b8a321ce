"""body.py and html2text.py: the whole text and the new text."""

from __future__ import annotations

import pytest

from postdesk.filter import parse
from postdesk.filter.body import REPLY_MARKER, extract, new_text
from postdesk.filter.html2text import html_to_text


def body_of(raw: bytes):
    return extract(parse(raw).message)


def test_plain():
    b = body_of(b"Subject: x\r\n\r\nHello\r\nworld\r\n")
    assert b.text == "Hello\nworld"
    assert b.new_text == "Hello\nworld"


def test_alternative_prefers_plain():
    raw = (
        b"Content-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>HTML version</p>\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nPlain version\r\n--b--\r\n"
    )
    assert body_of(raw).text == "Plain version"


def test_html_only_converted():
    raw = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p {color:red}</style></head><body><p>Hello <b>there</b>,</p>"
        b"<p>the printer&nbsp;is <i>broken</i> &amp; smokes.</p><script>alert(1)</script></body></html>"
    )
    b = body_of(raw)
    assert "Hello there," in b.text
    assert "the printer is broken & smokes." in b.text
    assert "color" not in b.text and "alert" not in b.text and "<" not in b.text


def test_html_blockquote_is_quoted_history():
    raw = (
        b"Content-Type: text/html\r\n\r\n"
        b"<div>New answer</div><div class=gmail_quote>On Mon, 1 Jan 2024, Bob &lt;b@x&gt; wrote:<br>"
        b"<blockquote>old text</blockquote></div>"
    )
    b = body_of(raw)
    assert "> old text" in b.text
    assert b.new_text == "New answer"


def test_html_links_lists_breaks():
    text = html_to_text("<p>see <a href='https://x.example/doc'>the doc</a></p><ul><li>one</li><li>two</li></ul>a<br>b")
    assert "see the doc <https://x.example/doc>" in text
    assert "- one\n- two" in text
    assert "a\nb" in text


def test_mixed_with_attachment_and_inline_text_parts():
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nPart one\r\n"
        b"--b\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n\r\n%PDF\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=log.txt\r\n\r\nLOG\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nPart two\r\n--b--\r\n"
    )
    b = body_of(raw)
    assert b.text == "Part one\n\nPart two"


def test_charsets():
    assert body_of("Content-Type: text/plain; charset=iso-8859-1\r\n\r\nCafé".encode("latin-1")).text == "Café"
    assert body_of("Content-Type: text/plain\r\n\r\nCafé".encode()).text == "Café"  # undeclared 8-bit
    assert body_of("Content-Type: text/plain; charset=x-bogus\r\n\r\nCafé".encode()).text == "Café"
    assert body_of("Content-Type: text/plain; charset=utf-8\r\n\r\nCafé".encode("latin-1")).text == "Café"
    raw = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nQ2Fmw6k=\r\n"
    assert body_of(raw).text == "Café"
    raw = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 =\r\nau lait\r\n"
    assert body_of(raw).text == "Café au lait"


def test_multipart_without_boundary_keeps_its_text():
    b = body_of(b"Content-Type: multipart/mixed\r\n\r\nJust some text\r\n")
    assert "Just some text" in b.text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Thanks!\n\nOn Mon, 1 Jan 2024 at 10:00, Support <support@example.com> wrote:\n> old\n> older", "Thanks!"),
        ("Thanks!\n\nOn Mon, 1 Jan 2024 at 10:00, Very Long Name <\nsupport@example.com> wrote:\n> old", "Thanks!"),
        ("Danke!\n\nAm 01.01.2024 um 10:00 schrieb Support <support@example.com>:\n> alt", "Danke!"),
        ("Merci\n\nLe lun. 1 janv. 2024 à 10:00, Support a écrit :\n> vieux", "Merci"),
        ("Fine.\n\n-----Original Message-----\nFrom: Support\nSent: Monday\nold", "Fine."),
        ("Fine.\n\n________________________________\nFrom: Support <s@example.com>\nSent: Monday\nTo: x\nold", "Fine."),
        ("Fine.\n\nFrom: Support <s@example.com>\nSent: Monday, 1 January 2024\nTo: me\nSubject: x\n\nold", "Fine."),
        ("Gut.\n\nVon: Support <s@example.com>\nGesendet: Montag\nAn: ich\nold", "Gut."),
        (f"My answer\n\n{REPLY_MARKER}\n\nYour ticket 1042 ...", "My answer"),
        ("Inline:\n> question one\nanswer one\n> question two\nanswer two", "Inline:\nanswer one\nanswer two"),
        ("Regards\n-- \nJane Doe\nACME", "Regards"),
        ("Reply\n\n> quoted\n-- \nsig", "Reply"),
        ("On the other hand I think it is fine.", "On the other hand I think it is fine."),
        # bottom-posting: the new text is below the quote
        ("On Mon, 1 Jan 2024 at 10:00, Support <support@example.com> wrote:\n> old\n> older\n\nNew below.\n\n-- \nJane", "New below."),
        ("On Mon, 1 Jan 2024 at 10:00, Very Long Name <\nsupport@example.com> wrote:\n\n> old\n\nNew below.", "New below."),
        ("\n\nAm 01.01.2024 um 10:00 schrieb Support <s@example.com>:\n> alt\nNeu.", "Neu."),
        # interleaved under an attribution, text before and after the blocks
        (
            "Hi,\n\nOn Mon, Support <s@example.com> wrote:\n> Q1?\n\nA1.\n\n> Q2?\n>\n> more Q2\n\nA2.\n\nThanks",
            "Hi,\n\nA1.\n\nA2.\n\nThanks",
        ),
        ("* Support <s@example.com> [2026-11-26 18:00 +0000]:\n> Q?\n\nA.", "A."),
        # an attribution over an unquoted copy: the copy is history
        ("Fine.\n\nOn Mon, 1 Jan 2024, Support <s@example.com> wrote:\n\nold unquoted", "Fine."),
        # top-posting over an Outlook block: everything below it is history, even unquoted "new-looking" text
        ("Top.\n\n-----Original Message-----\nFrom: S\nSent: Mon\n\nold\n> older\nolder still", "Top."),
        # only quoted history: nothing new
        ("On Mon, 1 Jan 2024, Support <s@example.com> wrote:\n> old", ""),
        ("", ""),
        ("From: here on, it works.\nThanks", "From: here on, it works.\nThanks"),
    ],
)
def test_new_text(text, expected):
    assert new_text(text) == expected


def test_hostile_bodies_give_an_answer():
    """Pathological bodies still give the expected text (their speed is
    measured in bench/filter.py, not here)."""
    assert new_text("x" * 1_000_000) == "x" * 1_000_000
    assert new_text("On " + "x " * 500_000 + " wrote:").startswith("On x x")
    assert new_text("Am " * 300_000).startswith("Am Am")
    assert new_text("> a\n" * 200_000) == ""
    assert isinstance(new_text("From: a\n" * 100_000), str)
    assert new_text("\n" * 500_000 + "x") == "x"
    assert "a" in new_text("> q\n\na\n" * 100_000)
    assert isinstance(new_text("On Mon, x wrote:\n" * 100_000), str)
    assert body_of(b"Content-Type: text/plain\r\n\r\n" + b"a" * 1_000_000).text.startswith("aaaa")
    assert isinstance(body_of(b"Content-Type: text/html\r\n\r\n" + b"<p>" * 300_000).text, str)
    assert isinstance(body_of(b"Content-Type: text/html\r\n\r\n" + b"<!" * 500_000).text, str)
