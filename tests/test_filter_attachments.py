"""attachments.py: what counts as an attachment, filenames, guarded content."""

from __future__ import annotations

import base64

import pytest

from postdesk.filter import parse
from postdesk.filter.attachments import clean_filename, collect


def mixed(*parts: bytes, boundary: bytes = b"b") -> bytes:
    out = b"From: c@cust.org\r\nContent-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


TEXT = b"Content-Type: text/plain\r\n\r\nHello"


def found(raw: bytes, limit: int = 100):
    return collect(parse(raw).message, limit)


def test_plain_message_has_none():
    f = found(b"Subject: x\r\n\r\nHello")
    assert f.attachments == () and not f.truncated


def test_pdf_attachment_decoded():
    pdf = b"%PDF-1.4 binary \x00\xff"
    part = (
        b"Content-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(pdf)
    )
    f = found(mixed(TEXT, part))
    (a,) = f.attachments
    assert (a.filename, a.content_type, a.data, a.inline) == ("report.pdf", "application/pdf", pdf, False)


def test_rfc2231_filename_with_continuations_and_charset():
    part = (
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=utf-8''Gr%C3%BC%C3%9Fe%20aus;\r\n filename*1*=%20K%C3%B6ln.txt\r\n\r\nx"
    )
    (a,) = found(mixed(TEXT, part)).attachments
    assert a.filename == "Grüße aus Köln.txt"


def test_encoded_word_filename():
    part = b"Content-Type: application/octet-stream; name=\"=?utf-8?B?w6Rww7ZsLnBkZg==?=\"\r\nContent-Disposition: attachment; filename=\"=?utf-8?B?w6Rww7ZsLnBkZg==?=\"\r\n\r\nx"
    (a,) = found(mixed(TEXT, part)).attachments
    assert a.filename == "äpöl.pdf"


def test_inline_image_with_content_id():
    part = b"Content-Type: image/png\r\nContent-ID: <img1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo="
    raw = (
        b"Content-Type: multipart/related; boundary=r\r\n\r\n"
        b"--r\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:img1@x\">\r\n"
        b"--r\r\n" + part + b"\r\n--r--\r\n"
    )
    (a,) = found(raw).attachments
    assert a.content_id == "img1@x" and a.inline and a.content_type == "image/png"
    assert a.data == b"\x89PNG\r\n\x1a\n"
    assert a.filename.startswith("attachment-") and a.filename.endswith(".png")


def test_attached_message_is_eml():
    inner = b"From: x@y\r\nSubject: The original\r\nMessage-ID: <o@y>\r\n\r\nOriginal body\r\n"
    part = b"Content-Type: message/rfc822\r\n\r\n" + inner
    (a,) = found(mixed(TEXT, part)).attachments
    assert a.content_type == "message/rfc822"
    assert a.filename == "The original.eml"
    assert b"Subject: The original" in a.data and b"Original body" in a.data


def test_winmail_dat_kept_opaque():
    part = b"Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"\x78\x9f\x3e\x22TNEF")
    (a,) = found(mixed(TEXT, part)).attachments
    assert (a.filename, a.content_type, a.data) == ("winmail.dat", "application/ms-tnef", b"\x78\x9f\x3e\x22TNEF")


def test_alternative_html_is_not_an_attachment():
    raw = (
        b"Content-Type: multipart/alternative; boundary=a\r\n\r\n"
        b"--a\r\nContent-Type: text/plain\r\n\r\nx\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--a--\r\n"
    )
    assert found(raw).attachments == ()


def test_report_parts_are_not_attachments_but_returned_message_is():
    raw = (
        b"From: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
        b"--r\r\nContent-Type: text/plain\r\n\r\nUndeliverable\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\n\r\n"
        b"--r\r\nContent-Type: message/rfc822\r\n\r\nFrom: support@example.com\r\nSubject: ack\r\n\r\nhi\r\n--r--\r\n"
    )
    atts = found(raw).attachments
    assert [a.content_type for a in atts] == ["message/rfc822"]


def test_single_part_non_text_message_is_an_attachment():
    raw = b"Content-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"%PDF")
    (a,) = found(raw).attachments
    assert (a.filename, a.data) == ("scan.pdf", b"%PDF")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Desktop\\file.pdf", "file.pdf"),
        ("a\r\nb\x00c.txt", "a b c.txt"),
        ("..", "attachment"),
        ("", "attachment"),
        ("  spaced.txt. ", "spaced.txt"),
        ("/", "attachment"),
    ],
)
def test_clean_filename(name, expected):
    assert clean_filename(name) == expected


def test_clean_filename_length_keeps_extension():
    out = clean_filename("a" * 1000 + ".pdf")
    assert len(out) == 255 and out.endswith(".pdf")
    assert len(clean_filename("b" * 1000)) == 255


def test_hostile_filename_in_message():
    part = b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"=?utf-8?q?..=2F..=2Fevil=0D=0A.sh?=\"\r\n\r\nx"
    (a,) = found(mixed(TEXT, part)).attachments
    assert "/" not in a.filename and "\r" not in a.filename and "\n" not in a.filename
    assert a.filename == "evil .sh"


def test_unknown_charset_and_broken_base64_do_not_raise():
    parts = [
        b"Content-Type: text/plain; charset=x-unknown-thing; name=a.txt\r\nContent-Disposition: attachment\r\n\r\nabc",
        b"Content-Type: application/octet-stream; name=b.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!###",
        b"Content-Type: multipart/mixed; name=c.bin\r\nContent-Disposition: attachment\r\n\r\nno boundary",
    ]
    f = found(mixed(TEXT, *parts))
    assert [a.filename for a in f.attachments] == ["a.txt", "b.bin", "c.bin"]
    assert f.attachments[0].data == b"abc"


def test_max_attachments_truncates():
    parts = [b"Content-Type: application/octet-stream; name=f%d.bin\r\n\r\nx" % i for i in range(5)]
    f = found(mixed(TEXT, *parts), limit=3)
    assert len(f.attachments) == 3 and f.truncated and f.total == 5
    assert [a.filename for a in f.attachments] == ["f0.bin", "f1.bin", "f2.bin"]
    f0 = found(mixed(TEXT, *parts), limit=0)
    assert f0.attachments == () and f0.truncated


def test_deep_nesting_is_bounded():
    raw = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for i in range(1, 60):
        raw += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i - 1, i)
    raw += b"--b59\r\nContent-Type: application/octet-stream; name=deep.bin\r\n\r\nx\r\n"
    f = found(raw)  # must not raise; the part is beyond MAX_DEPTH or found, either is fine
    assert len(f.attachments) <= 1
