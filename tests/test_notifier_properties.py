"""Property tests (hypothesis) over compose: whatever a sender put in a
subject, a display name or a file name, the mail we write has every line
within 998 octets (RFC 5322 section 2.1.1), CRLF only, 7-bit; its headers
parse back to the cleaned text; no value adds a header line (injection);
no bidirectional control reaches what people read."""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from urllib.parse import unquote_to_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postdesk.notifier.compose import MAX_NAME, MAX_SUBJECT, clean, compose
from postdesk.outbox_rows import AttachmentInfo, Entry, Job, Person

SECRET = b"k" * 32
NOW = datetime(2026, 11, 27, 12, 0, 0)
BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")

# Text a hostile sender could make us store: any code point (surrogates
# excluded: the store keeps UTF-8), biased towards the dangerous ones.
DANGER = st.sampled_from(["\r", "\n", "\r\n", "\x00", "=?", "?=", "=?utf-8?q?X=0D=0ABcc:_a@b.c?=", "Bcc: x@evil.test", ":", ";", '"', "\\", " ", "\t", *BIDI, "é", "日本", "\U0001f600"])
TEXT = st.lists(st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), DANGER), max_size=60).map("".join)
LONG = st.one_of(TEXT, st.integers(0, 3000).map(lambda n: "ü" * n), st.integers(0, 3000).map(lambda n: "a" * n))


def _job(subject: str, name: str, filename: str, kind: str) -> Job:
    entry = Entry(
        7,
        "message",
        True,
        Person("eve@customer.org", name),
        "Hello.",
        NOW,
        attachments=(AttachmentInfo(1, filename, "application/pdf", 2, "ab"),),
    )
    return Job(row_id=1, token=1, kind=kind, ticket=1042, subject=subject, status="open", recipient=Person("alice@customer.org", name), entries=(entry,), in_reply_to="abc@customer.org")


def _raw(data: bytes, name: str) -> str:
    """The last ``name:`` field of the mail, unfolded (the attachment's)."""
    text = data.decode("ascii").replace("\r\n ", " ").replace("\r\n\t", " ")
    return [line for line in text.split("\r\n") if line.lower().startswith(name.lower() + ":")][-1].split(":", 1)[1]


def rfc2231_filename(value: str) -> str:
    """The filename parameter, decoded strictly as RFC 2231 sections 3-4 say."""
    params = [p.strip() for p in value.split(";")[1:]]
    plain = [p.split("=", 1)[1] for p in params if p.startswith("filename=")]
    if plain:
        v = plain[0]
        assert v.startswith('"') and v.endswith('"') and "\\" not in v
        return v[1:-1]
    parts = sorted((int(k.split("*")[1]), v) for k, v in (p.split("=", 1) for p in params if p.startswith("filename*")))
    assert [i for i, _ in parts] == list(range(len(parts)))
    joined = "".join(v for _, v in parts)
    assert joined.startswith("utf-8''")
    return unquote_to_bytes(joined[len("utf-8''"):]).decode("utf-8")


def _head_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]


EXPECTED = {
    "update": ["From", "Reply-To", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
               "X-Auto-Response-Suppress", "X-Postdesk-Loop", "X-Postdesk-Ticket", "MIME-Version", "Content-Type"],
}
EXPECTED["alert"] = EXPECTED["update"] + ["Content-Transfer-Encoding"]
EXPECTED["ack"] = EXPECTED["alert"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(subject=LONG, name=LONG, filename=LONG, kind=st.sampled_from(["ack", "alert", "update"]))
def test_compose_is_clean_whatever_the_input(config,  # read-only: safe to share between examples
    subject, name, filename, kind):
    mail = compose(_job(subject, name, filename, kind), config, SECRET, NOW, lambda sha: b"%PDF")
    data = mail.data
    assert data.isascii()
    assert b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998

    # No header injection: exactly our header lines, each once.
    assert _head_names(data) == EXPECTED[kind]

    m = BytesParser(policy=policy.default).parsebytes(data)
    assert m["Subject"] == clean(f"[#1042] {clean(subject)[:MAX_SUBJECT]}".rstrip())
    (to,) = m["To"].addresses
    assert to.addr_spec == "alice@customer.org"
    expected = clean(clean(name)[:MAX_NAME])
    phrase = " ".join(message_from_bytes(data)["To"].split()).rpartition("<")[0].strip()
    if phrase.startswith("=?"):
        # A word longer than one encoded-word (75 characters) is split over
        # adjacent encoded-words, which decode as one text (RFC 2047 section
        # 6.2); Python's address parser puts a space between them, the
        # RFC 2047 decoder does not.
        assert str(make_header(decode_header(phrase))) == expected
    else:
        assert to.display_name == expected
    shown = [str(m["Subject"]), to.display_name]
    if kind == "update":
        (part,) = list(m.iter_attachments())
        expected_name = clean(filename) or "attachment"
        assert rfc2231_filename(_raw(data, "Content-Disposition")) == expected_name
        if not expected_name.startswith('"'):
            # (Python's get_filename unquotes a decoded value once more when
            # it starts with a double quote; the strict decoder above does not.)
            assert part.get_filename() == expected_name
        assert part.get_content() == b"%PDF"
        shown.append(part.get_filename())
    body = m.get_body(("plain",)).get_content()
    shown.append(body)
    assert not BIDI & set("".join(shown))
