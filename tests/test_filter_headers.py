"""headers.py: lenient decoding, clean_header, address extraction."""

from __future__ import annotations

import pytest

from postdesk.filter import clean_header
from postdesk.filter import headers as hdr


@pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"])
def test_clean_header_removes_controls(bad):
    out = clean_header(f"Hello{bad}Bcc: x@y")
    assert out == "Hello Bcc: x@y"
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in out)


def test_clean_header_collapses_whitespace_and_strips():
    assert clean_header("  a \t\t b\r\n\tc  ") == "a b c"
    assert clean_header("") == ""
    assert clean_header(None) == ""


def test_clean_header_lone_surrogates_become_encodable():
    out = clean_header("caf\udce9")
    out.encode("utf-8")  # must not raise


def test_encoded_crlf_is_decoded_then_cleaned():
    raw = "=?utf-8?q?Hello=0D=0ABcc:_victim@example.net?="
    assert hdr.decode_words(raw) == "Hello\r\nBcc: victim@example.net"
    value = hdr.decode_header(raw)
    assert "\r" not in value and "\n" not in value
    assert value == "Hello Bcc: victim@example.net"


def test_decode_words_joins_adjacent_words_and_split_characters():
    # "ö" (c3 b6) split across two encoded-words (RFC 2047 6.2).
    assert hdr.decode_words("=?utf-8?q?J=C3?= =?utf-8?q?=B6rg?=") == "Jörg"
    assert hdr.decode_words("=?iso-8859-1?q?Caf=E9?= au lait") == "Café au lait"
    assert hdr.decode_words("=?UTF-8?B?w6TDtsO8?=") == "äöü"
    assert hdr.decode_words("plain text") == "plain text"


def test_decode_words_bad_base64_and_unknown_charset_do_not_raise():
    assert hdr.decode_words("=?utf-8?b?###?=") is not None
    assert hdr.decode_words("=?x-no-such-charset?q?caf=C3=A9?=") == "café"  # falls back to UTF-8
    assert hdr.decode_words("=?x-no-such-charset?q?caf=E9?=") == "café"  # then latin-1
    assert hdr.decode_words("=?utf-8*en?q?hi?=") == "hi"  # RFC 2231 language suffix


def test_8bit_header_utf8_and_latin1():
    utf8 = "Grüße".encode().decode("ascii", "surrogateescape")
    latin1 = "Grüße".encode("latin-1").decode("ascii", "surrogateescape")
    assert hdr.decode_header(utf8) == "Grüße"
    assert hdr.decode_header(latin1) == "Grüße"


def test_lenient_decode():
    assert hdr.lenient_decode("é".encode(), None) == "é"
    assert hdr.lenient_decode("é".encode(), "us-ascii") == "é"  # the old client lie
    assert hdr.lenient_decode(b"\xe9", "utf-8") == "é"  # wrong label -> latin-1
    assert hdr.lenient_decode(b"\xe9", "bogus") == "é"
    assert hdr.lenient_decode("é".encode("cp1252"), "windows-1252") == "é"


def test_unfold():
    assert hdr.unfold("a\r\n b\n\tc") == "a b\tc"


def test_addresses_basic():
    got = hdr.addresses(['"Doe, Jane" <Jane.Doe@Example.ORG>, bob@x.org', "Carol <carol@y.org>"])
    assert got == [("Doe, Jane", "jane.doe@example.org"), ("", "bob@x.org"), ("Carol", "carol@y.org")]


def test_addresses_encoded_name_with_specials_and_crlf():
    got = hdr.addresses(["=?utf-8?q?J=C3=B6rg=0D=0ABcc:_x@y,_z?= <joerg@cust.org>"])
    assert got == [("Jörg Bcc: x@y, z", "joerg@cust.org")]


def test_addresses_skip_garbage_and_dedupe():
    got = hdr.addresses(["not an address, <>, a@b.c, A@B.C, ((((((", "undisclosed-recipients:;"])
    assert got == [("", "a@b.c")]


def test_addresses_8bit_name():
    raw = "Jörg <j@x.org>".encode().decode("ascii", "surrogateescape")
    assert hdr.addresses([raw]) == [("Jörg", "j@x.org")]


def test_clean_address():
    assert hdr.clean_address(" <A@B.org> ") == "a@b.org"
    assert hdr.clean_address("no-at-sign") == ""
    assert hdr.clean_address("a@b c") == ""
    assert hdr.clean_address("a\r\n@b") == ""


def test_message_ids():
    assert hdr.message_ids("<a@b> <c@d>\r\n <e@f>") == ["a@b", "c@d", "e@f"]
    assert hdr.message_ids("bare@id.example") == ["bare@id.example"]
    assert hdr.message_ids("") == []
    assert hdr.message_ids(" ".join(f"<{i}@x>" for i in range(300)), limit=100)[-1] == "299@x"


def test_hostile_header_sizes_give_an_answer():
    """Pathological headers still decode to clean values (speed: bench/filter.py)."""
    for value in (
        hdr.decode_header("=?utf-8?q?" + "a" * 100_000 + "?="),
        hdr.decode_header(" " * 100_000 + "x"),
        hdr.decode_header("=?" * 50_000),
        clean_header("\r\n" * 100_000),
    ):
        assert isinstance(value, str) and not any(c in value for c in "\r\n\x00")
    assert hdr.addresses(["(" * 50_000]) == []
    assert all(a == "a@b" for _n, a in hdr.addresses(['"x" <a@b>, ' * 10_000]))
    assert hdr.message_ids("<" * 100_000) == []


def test_message_ids_keep_the_end_of_a_100k_references():
    ids = [f"<{i:06d}.thread@lists.example>" for i in range(4000)]  # ~110 KB
    got = hdr.message_ids("\r\n ".join(ids))
    assert got[-1] == "003999.thread@lists.example" and len(got) == 100


def test_encoded_words_in_a_codec_that_is_no_charset_are_not_decoded_by_it():
    """punycode, unicode_escape, rot13 ... are Python codecs, not charsets:
    such a word is read as an unknown charset (UTF-8, else a guess)."""
    assert hdr.decode_header("=?punycode?q?-abc?=") == "-abc"
    assert hdr.decode_header("=?unicode_escape?q?caf\\xe9?=") == "caf\\xe9"
    assert hdr.decode_header("=?rot13?q?Uryyb?=") == "Uryyb"
    assert hdr.decode_header("=?base64?q?aGVsbG8=3D?=") == "aGVsbG8="
    # adjacent words are joined before decoding: a long punycode run stays plain text
    long = " ".join(["=?punycode?q?-" + "a" * 60 + "?="] * 200)  # within MAX_HEADER
    assert hdr.decode_header(long) == ("-" + "a" * 60) * 200
