"""Lenient decoding, one behaviour per test: charset labels, raw 8-bit
headers, encoded-words, TNEF, transfer-encoded attached mail, the HTML body.

The corpus (tests/data/mail/decode-*.eml) has the same cases as whole
mails; these pin the pieces and their bad-input outcomes.
"""

from __future__ import annotations

import base64
import logging
import struct

import pytest

from postdesk.filter import attachments as attmod
from postdesk.filter import headers as hdr
from postdesk.filter import htmlbody, parse, tnef


def raw8(text: str, charset: str) -> str:
    """``text`` as a raw 8-bit header value reaches the filter (surrogateescape)."""
    return text.encode(charset).decode("ascii", "surrogateescape")


@pytest.mark.parametrize(
    "label, codec",
    [
        ("utf-8", "utf-8"),
        ('"UTF-8"', "utf-8"),
        (" utf8 ", "utf-8"),
        ("utf-8*de", "utf-8"),  # RFC 2231 language suffix
        ("iso-8859-1", "cp1252"),  # WHATWG: latin-1 labels mean windows-1252
        ("ISO-8859-8-I", "iso8859-8"),
        ("x-mac-roman", "mac-roman"),
        ("cp-850", "cp850"),
        ("windows-874", "cp874"),
        ("ks_c_5601-1987", "cp949"),
        ("gb2312", "gb18030"),
        ("shift_jis", "cp932"),
        ("x-euc-jp", "euc_jp"),
        ("us-ascii", "us-ascii"),
        ("ansi_x3.4-1968", "us-ascii"),
        ("x-unknown", ""),
        ("unknown-8bit", ""),
        ("bogus-charset", ""),
        ("", ""),
        (None, ""),
        ("x" * 500, ""),
    ],
)
def test_resolve_charset(label, codec):
    assert hdr.resolve_charset(label) == codec


def test_lenient_decode_reads_what_the_label_means():
    assert hdr.lenient_decode("\u201equote\u201c \u20ac".encode("cp1252"), "iso-8859-1") == "\u201equote\u201c \u20ac"
    assert hdr.lenient_decode("Grüße".encode(), "iso-8859-1") == "Grüße"  # a latin-1 label on UTF-8: UTF-8 wins
    assert hdr.lenient_decode("שלום".encode("iso-8859-8"), "iso-8859-8-i") == "שלום"
    assert hdr.lenient_decode("Grüße".encode("cp1252"), "x-unknown") == "Grüße"
    assert hdr.lenient_decode("Grüße".encode("cp1252"), None) == "Grüße"
    assert hdr.lenient_decode(b"\x81\x8d", None) == "\x81\x8d"  # undefined in cp1252: latin-1, never an exception


def test_unlabelled_text_uses_the_hint_then_a_guess():
    word = "привет".encode("koi8-r")
    assert hdr.lenient_decode(word, None, hint="koi8-r") == "привет"
    # Six bytes are too few to guess from: the Western default, not a wild guess.
    assert hdr.guess_charset(word) == "cp1252"
    long = ("Здравствуйте, принтер в офисе не печатает с понедельника. " * 3).encode("cp1251")
    assert hdr.lenient_decode(long, None).startswith("Здравствуйте")
    assert hdr.guess_charset(b"plain ascii") == "" and hdr.guess_charset("ü".encode()) == ""


def test_raw_8bit_header_in_the_body_charset():
    assert hdr.decode_header(raw8("Принтер не печатает", "koi8-r"), "koi8-r") == "Принтер не печатает"
    assert hdr.decode_header(raw8("Rückfrage – März", "cp1252")) == "Rückfrage – März"
    assert hdr.decode_header(raw8("Lieferung beschädigt", "utf-8"), "koi8-r") == "Lieferung beschädigt"  # RFC 6532 UTF-8 first


def test_parsed_header_uses_the_message_charset():
    raw = b"Subject: " + "Счёт".encode("koi8-r") + b"\nContent-Type: text/plain; charset=KOI8-R\n\n" + "Текст".encode("koi8-r") + b"\n"
    parsed = parse(raw)
    assert parsed.charset_hint == "koi8-r"
    assert parsed.header("subject") == "Счёт"


@pytest.mark.parametrize(
    "raw, text",
    [
        ("=?utf-8?q?Drucker funktioniert nicht?=", "Drucker funktioniert nicht"),
        ("=?UTF-8?B?w6TDtsO8 w6TDtsO8?=", "äöüäöü"),
        ("=?iso-8859-1?q?Caf=E9?= =?utf-8?q?_=E2=80=93_ok?=", "Café – ok"),
        ("=?x-mac-roman?q?caf=8E?=", "café"),
        ("=?utf-8?q?a?==?utf-8?q?b?=", "ab"),
        ("=?utf-8?q?broken", "=?utf-8?q?broken"),  # unterminated: left as it is
        ("=?utf-8?q?x=0D=0ABcc:_evil@example.org?=", "x Bcc: evil@example.org"),  # decoded CR/LF never survive
    ],
)
def test_encoded_words(raw, text):
    assert hdr.decode_header(raw) == text


def _tnef(*files: tuple[str, bytes]) -> bytes:
    def obj(level, ident, typ, data):
        return struct.pack("<BHHI", level, ident, typ, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)

    t = struct.pack("<IH", 0x223E9F78, 1) + obj(1, 0x9006, 8, struct.pack("<I", 0x10000))
    for name, data in files:
        t += obj(2, 0x9002, 6, bytes(14)) + obj(2, 0x8010, 1, name.encode("cp1252") + b"\0") + obj(2, 0x800F, 6, data)
    return t


def test_tnef_unpacked():
    found = tnef.unpack(_tnef(("Bericht März.pdf", b"%PDF-1.4 x"), ("../../etc/passwd", b"root")))
    assert [(a.filename, a.content_type, a.data) for a in found] == [
        ("Bericht März.pdf", "application/pdf", b"%PDF-1.4 x"),
        ("passwd", "application/octet-stream", b"root"),  # a path is cut to its basename
    ]


def test_tnef_unreadable_is_kept_whole_and_logged(caplog):
    raw = (
        b"Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n"
        b"--b\nContent-Type: application/ms-tnef; name=winmail.dat\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(b"this is not TNEF at all")
        + b"--b--\n"
    )
    with caplog.at_level(logging.INFO, logger="postdesk.filter"):
        found = attmod.collect(parse(raw).message, 10)
    assert [(a.filename, a.data) for a in found.attachments] == [("winmail.dat", b"this is not TNEF at all")]
    assert "winmail.dat not unpacked" in caplog.text


def test_tnef_files_count_against_the_attachment_limit():
    blob = _tnef(*[(f"f{i}.txt", b"x") for i in range(5)])
    raw = (
        b"Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n"
        b"--b\nContent-Type: application/ms-tnef; name=winmail.dat\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(blob)
        + b"--b--\n"
    )
    found = attmod.collect(parse(raw).message, 3)
    assert [a.filename for a in found.attachments] == ["f0.txt", "f1.txt", "f2.txt"]
    assert found.truncated and found.total == 5


def test_quoted_printable_attached_message():
    inner = b"From: a@example.org\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n\nline=\nsame line\n"
    import quopri

    raw = (
        b"Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee attached\n"
        b"--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: quoted-printable\n\n" + quopri.encodestring(inner) + b"\n--b--\n"
    )
    (att,) = attmod.collect(parse(raw).message, 10).attachments
    assert att.filename == "Grüße.eml"
    assert att.data.startswith(b"From: a@example.org\nSubject:")


HTML = b'<p>Hello <b>there</b><script>x()</script></p><img src="cid:logo@x">'


def _mail(body: bytes) -> bytes:
    return b"Subject: x\nMIME-Version: 1.0\n" + body


def test_html_body_choice():
    alt = _mail(
        b"Content-Type: multipart/alternative; boundary=a\n\n--a\nContent-Type: text/plain\n\nHello there\n"
        b"--a\nContent-Type: text/html\n\n" + HTML + b"\n--a--\n"
    )
    assert htmlbody.extract(parse(alt).message) == '<p>Hello <b>there</b></p><img src="cid:logo@x">'
    text_only = _mail(b"Content-Type: text/plain\n\nHello <b>not html</b>\n")
    assert htmlbody.extract(parse(text_only).message) == ""
    html_only = _mail(b"Content-Type: text/html; charset=utf-8\n\n" + HTML)
    assert "<b>there</b>" in htmlbody.extract(parse(html_only).message)


def test_html_body_mixed_keeps_plain_pieces_escaped_in_order():
    mixed = _mail(
        b"Content-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/html\n\n<p>first</p>\n"
        b"--m\nContent-Type: application/pdf; name=a.pdf\nContent-Disposition: attachment\n\n%PDF\n"
        b"--m\nContent-Type: text/plain\n\nsecond <i>not markup</i>\n--m--\n"
    )
    out = htmlbody.extract(parse(mixed).message)
    assert out.index("<p>first</p>") < out.index("second &lt;i&gt;not markup&lt;/i&gt;")
    assert "<i>" not in out


def test_html_body_is_bounded_and_says_so(caplog):
    big = _mail(b"Content-Type: text/html\n\n<p>" + b"a" * (htmlbody.MAX_HTML + 1000) + b"</p>")
    with caplog.at_level(logging.INFO, logger="postdesk.filter"):
        out = htmlbody.extract(parse(big).message)
    assert len(out) <= htmlbody.MAX_HTML + 20 and out.startswith("<p>aaa")
    assert "cut to" in caplog.text


# --- only real character sets: a label naming another codec is an unknown charset ---

NOT_CHARSETS = [
    "punycode", "x-punycode", "PUNYCODE", "idna", "unicode_escape", "unicode-escape", "raw_unicode_escape",
    "unicode_internal", "undefined", "charmap", "mbcs", "oem", "rot13", "rot_13", "rot-13", "base64", "base64_codec",
    "hex", "hex_codec", "zlib", "zip", "bz2", "quopri", "quoted-printable", "uu", "uu_codec",
]  # fmt: skip


@pytest.mark.parametrize("label", NOT_CHARSETS)
def test_resolve_charset_refuses_codecs_that_are_no_charset(label):
    assert hdr.resolve_charset(label) == ""


@pytest.mark.parametrize("label", ["utf-16", "utf-7", "koi8-r", "iso-2022-jp", "big5", "windows-1251", "x-mac-cyrillic"])
def test_resolve_charset_still_knows_real_charsets(label):
    assert hdr.resolve_charset(label) != ""


@pytest.mark.parametrize("label", ["punycode", "unicode_escape", "raw_unicode_escape", "idna", "rot13", "base64", "hex", "uu"])
def test_refused_charset_decodes_like_an_unknown_one(label):
    for data in (b"caf\\xe9 \\u0041 -abc", "Grüße".encode("cp1252"), "Grüße".encode()):
        assert hdr.lenient_decode(data, label) == hdr.lenient_decode(data, "bogus-charset")
    assert hdr.decode_header(f"=?{label}?q?-abc?=") == "-abc"
    assert hdr.decode_header(f"=?{label}?q?caf=C3=A9?=") == "café"


def test_punycode_bomb_is_not_decoded_as_punycode():
    """300 KB that CPython's quadratic punycode decoder needs seconds for:
    refused, read as the ASCII it is, at the cost of a plain decode."""
    import time

    data = b"-" + b"a" * 300_000
    assert hdr.lenient_decode(data, "punycode") == data.decode("ascii")

    def best(f) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    refused = best(lambda: hdr.lenient_decode(data, "punycode"))
    plain = best(lambda: data.decode("latin-1"))
    # Decoding it as punycode costs some 100000 times a latin-1 decode.
    assert refused < 1000 * max(plain, 1e-6)


def test_text_part_with_a_refused_charset():
    from postdesk.filter import parts

    raw = b"Content-Type: text/plain; charset=punycode\r\n\r\n-" + b"a" * 1000 + b"\r\n"
    assert parts.text(parse(raw).message).startswith("-aaaa")
