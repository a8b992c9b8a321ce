"""parse.py: never raises, records defects, keeps raw headers."""

from __future__ import annotations

import hashlib

import pytest

from postdesk.filter import parse
from postdesk.filter.parse import Parsed


def test_basic():
    raw = b"From: a@b.org\r\nSubject: Hi\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n"
    p = parse(raw)
    assert isinstance(p, Parsed)
    assert p.size == len(raw)
    assert p.sha256 == hashlib.sha256(raw).hexdigest()
    assert p.header("subject") == "Hi"
    assert p.header("SUBJECT") == "Hi"
    assert p.raw_headers("from") == ["a@b.org"]
    assert p.key == "x@y"
    assert p.header("missing") == ""


def test_key_without_message_id_is_hash():
    raw = b"Subject: x\r\n\r\nbody"
    assert parse(raw).key == "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02",
        b"no headers at all, just text\n",
        b"Subject: " + b"\xff\xfe" * 100 + b"\r\n\r\n\xff",
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\nbroken",
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
        b"Content-Type: text/plain; charset=\"\r\n\r\n",
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
        b":\r\n: :\r\n\r\n",
        b"From: " + b"(" * 5000 + b"\r\n\r\n",
        "From: ünïcode as str\n\nbody".encode().decode("utf-8"),  # a str is accepted too
    ],
)
def test_never_raises(raw):
    p = parse(raw)
    assert isinstance(p, Parsed)
    p.header("subject")
    p.header("from")


def test_defects_recorded():
    p = parse(b"Content-Type: multipart/mixed\r\n\r\nno boundary here\r\n")
    assert "NoBoundaryInMultipartDefect" in p.defects


def test_8bit_subject_decoded():
    p = parse("Subject: Grüße aus Köln\r\n\r\nx".encode())
    assert p.header("subject") == "Grüße aus Köln"
    p = parse("Subject: Grüße aus Köln\r\n\r\nx".encode("latin-1"))
    assert p.header("subject") == "Grüße aus Köln"


def test_folded_and_encoded_subject():
    p = parse(b"Subject: =?utf-8?q?Caf=C3=A9?=\r\n =?utf-8?q?_cr=C3=A8me?=\r\n\r\nx")
    assert p.header("subject") == "Café crème"


def test_hostile_sizes_parse():
    """Each parses to a message (speed: bench/filter.py)."""
    raws = [
        b"Subject: " + b"a" * 100_000 + b"\r\nFrom: x@y\r\n\r\nbody",
        b"Subject: x\r\n" + b"X-Junk: y\r\n" * 10_000 + b"\r\nbody",
        b"Subject: x\r\n\r\n" + b"a" * 1_000_000,
        b"Subject: " + b"=?utf-8?q?a?= " * 10_000 + b"\r\n\r\n",
        # 20,000 MIME parameters: the header registry alone took 25 s on this before FilterPolicy.
        b"Content-Type: text/plain; " + b"a=b; " * 20_000 + b"\r\n\r\nbody",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Disposition: attachment; filename=\""
        + b"=?utf-8?q?a?=" * 8_000
        + b"\"\r\n\r\nx\r\n--b--\r\n",
    ]
    for raw in raws:
        p = parse(raw)
        assert p.size == len(raw)
        assert isinstance(p.header("subject"), str)
        for part in p.message.walk():
            assert part.get_content_type()
            part.get_filename()


def test_policy_is_policy_default_with_guards():
    from email import policy

    from postdesk.filter.parse import POLICY, FilterPolicy

    p = parse(b"Subject: x\r\n\r\nbody")
    assert isinstance(p.message.policy, FilterPolicy)
    for attr in ("linesep", "max_line_length", "utf8", "refold_source", "cte_type", "raise_on_defect"):
        assert getattr(POLICY, attr) == getattr(policy.default, attr)
    assert str(p.message["subject"]) == "x"
