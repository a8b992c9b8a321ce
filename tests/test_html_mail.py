"""HTML mail from the wire to the admin: ingest into the store (SQLite and
PostgreSQL), then ``postdesk ticket show --json`` and ``--html`` in a real
subprocess.

The mail is an Outlook-style multipart/related with a pasted screenshot,
hostile markup, a tracking pixel and a plain signature logo kept as an
ordinary attachment.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest
from cli_helpers import make_desk

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4\n% quote\n%%EOF\n"

HTML_MAIL = (
    b"From: Alice Customer <alice@customer.example>\n"
    b"To: support@example.com\n"
    b"Subject: Screen shows error E-17\n"
    b"Date: Sat, 28 Nov 2026 10:00:00 +0100\n"
    b"Message-ID: <html-mail-1@customer.example>\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="mixed"\n'
    b"\n--mixed\n"
    b'Content-Type: multipart/related; type="multipart/alternative"; boundary="rel"\n'
    b"\n--rel\n"
    b'Content-Type: multipart/alternative; boundary="alt"\n'
    b"\n--alt\n"
    b"Content-Type: text/plain; charset=utf-8\n\n"
    b"The screen shows error E-17:\n[cid:shot@customer.example]\nRegards, Alice\n"
    b"\n--alt\n"
    b"Content-Type: text/html; charset=utf-8\n\n"
    b'<html><head><style>body{font-family:Calibri}</style><script>alert("head")</script></head>'
    b'<body onload="steal()"><p>The screen shows <b>error E-17</b>:</p>'
    b'<p><img src="cid:shot@customer.example" alt="screenshot" onerror="steal()"></p>'
    b'<table border="1"><tr><td>Model</td><td>X200</td></tr></table>'
    b'<img src="https://tracker.example/open.gif?u=alice">'
    b'<p><a href="javascript:steal()">details</a> <a href="https://customer.example/kb/17">kb</a></p>'
    b"<form action=\"https://phish.example/\"><input name=\"pw\"></form>"
    b"<p>Regards, Alice</p></body></html>\n"
    b"\n--alt--\n"
    b"\n--rel\n"
    b"Content-Type: image/png; name=\"image001.png\"\n"
    b"Content-Transfer-Encoding: base64\n"
    b"Content-ID: <shot@customer.example>\n"
    b"Content-Disposition: inline; filename=\"image001.png\"\n\n" + base64.encodebytes(PNG) + b"\n--rel--\n"
    b"\n--mixed\n"
    b'Content-Type: application/pdf; name="quote.pdf"\n'
    b"Content-Transfer-Encoding: base64\n"
    b'Content-Disposition: attachment; filename="quote.pdf"\n\n' + base64.encodebytes(PDF) + b"\n--mixed--\n"
)

TEXT_MAIL = (
    b"From: Bob <bob@customer.example>\nTo: support@example.com\nSubject: plain\n"
    b"Message-ID: <text-mail-1@customer.example>\nContent-Type: text/plain; charset=utf-8\n\nJust text.\n"
)


@pytest.fixture
def desk(tmp_path, store_url):
    return make_desk(tmp_path / "desk", store_url)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.meta: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "meta":
            self.meta.append(a)


def test_html_mail_is_stored_sanitised_beside_its_text(desk):
    result = desk.record(HTML_MAIL)
    assert result.ticket == 1000
    shown = desk.json("ticket", "show", "1000")
    (action,) = shown["actions"]
    assert "The screen shows error E-17" in action["text"]
    html = action["html"]
    assert "<b>error E-17</b>" in html and "<table" in html and 'src="cid:shot@customer.example"' in html
    assert 'href="https://customer.example/kb/17"' in html
    for bad in ("script", "alert", "onload", "onerror", "steal", "tracker.example", "<form", "<input", "javascript:", "Calibri"):
        assert bad not in html, f"{bad!r} survived: {html}"
    # The pasted screenshot is inline with its Content-ID; the PDF is an ordinary attachment.
    by_name = {a["filename"]: a for a in action["attachments"]}
    assert by_name["image001.png"]["inline"] is True
    assert by_name["image001.png"]["content_id"] == "shot@customer.example"
    assert by_name["image001.png"]["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert by_name["quote.pdf"]["inline"] is False


def test_text_mail_has_no_html(desk):
    desk.record(TEXT_MAIL, sender="bob@customer.example")
    (action,) = desk.json("ticket", "show", "1000")["actions"]
    assert action["html"] == "" and action["text"] == "Just text."


def test_ticket_show_html_is_a_standalone_safe_page(desk):
    desk.record(HTML_MAIL)
    desk.record(TEXT_MAIL.replace(b"Subject: plain", b"Subject: Re: [#1000] Screen shows error E-17"), sender="bob@customer.example")
    p = desk.cli("ticket", "show", "1000", "--html")
    assert p.returncode == 0, p.stderr.decode()
    page = p.stdout.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    parsed = _Tags()
    parsed.feed(page)
    csp = next(m["content"] for m in parsed.meta if m.get("http-equiv", "").lower() == "content-security-policy")
    assert "default-src 'none'" in csp and "form-action 'none'" in csp
    assert "http" not in csp  # no origin to load from
    # The screenshot is embedded from the store, nothing is fetched.
    images = [a.get("src", "") for t, a in parsed.tags if t == "img"]
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in images
    assert all(src.startswith("data:image/") for src in images if src), images
    assert not any(t in ("script", "form", "input", "iframe", "link") for t, _ in parsed.tags)
    assert not any(k.startswith("on") for _, a in parsed.tags for k in a)
    # The text-only reply is there as escaped preformatted text.
    assert re.search(r"<pre[^>]*>Just text\.</pre>", page)
    assert "<b>error E-17</b>" in page


def test_ticket_show_html_and_json_exclude_each_other(desk):
    desk.record(TEXT_MAIL, sender="bob@customer.example")
    p = desk.cli("ticket", "show", "1000", "--html", "--json")
    assert p.returncode == 64, (p.returncode, p.stderr)


def test_show_html_without_the_image_file(tmp_path, store_url):
    """A blob gone from disk shows as a missing image, not as an error or a remote load."""
    desk = make_desk(tmp_path / "files", store_url, store={"blobs": "directory"})
    desk.record(HTML_MAIL)
    blob = next(p for p in desk.attachments.rglob("*") if p.is_file() and p.read_bytes() == PNG)
    blob.unlink()
    p = desk.cli("ticket", "show", "1000", "--html")
    assert p.returncode == 0, p.stderr.decode()
    page = p.stdout.decode()
    assert "cid:" not in page and "data:image/png" not in page
    assert 'alt="screenshot"' in page
