"""Composition of notifier mails from plain Jobs: headers, encoding, bodies.

No store and no SMTP here; the bytes are parsed back with the strict modern
parser (``policy.default``), the way a recipient's client would read them.
"""

from __future__ import annotations

import re
from datetime import datetime
from email import policy
from email.parser import BytesParser

import pytest

from postdesk.msgid import ticket_from_message_id
from postdesk.notifier.compose import REPLY_MARKER, ComposeError, compose, mailbox, msgid
from postdesk.notifier.smtp import queue_id
from postdesk.outbox_rows import AttachmentInfo, Entry, Job, Person

SECRET = b"k" * 32
NOW = datetime(2026, 11, 27, 12, 0, 0)
# Decoded RFC 2047 with a CR LF in it, plus text that looks like another
# encoded-word: email.policy.default would decode that one again on output.
EVIL = "=?utf-8?q?Hello=0D=0ABcc:_victim@evil.test?= \r\nBcc: victim2@evil.test"


ALICE = Person("alice@customer.org", "Alice")


def job(kind="update", subject="Printer on fire", recipient=ALICE, entries=None, **kw) -> Job:
    if entries is None:
        entries = (Entry(1, "message", True, Person("bob@example.com", "Bob", staff=True), "Try again.", NOW),)
    return Job(row_id=1, token=1, kind=kind, ticket=1042, subject=subject, status="open", recipient=recipient, entries=tuple(entries), **kw)


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def raw_headers(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]


@pytest.mark.parametrize("kind, auto", [("ack", "auto-replied"), ("alert", "auto-generated"), ("update", "auto-generated")])
def test_headers_of_every_kind(config, kind, auto):
    mail = compose(job(kind, in_reply_to="<abc@customer.org>"), config, SECRET, NOW, lambda sha: b"")
    m = parse(mail.data)
    assert (mail.sender, mail.recipient) == ("support@example.com", "alice@customer.org")
    assert m["From"] == m["Reply-To"] == "Example Inc <support@example.com>"
    assert m["To"] == "Alice <alice@customer.org>"
    assert m["Subject"] == "[#1042] Printer on fire"
    assert m["Date"] == "Fri, 27 Nov 2026 12:00:00 +0000"
    assert m["Message-ID"] == f"<{mail.message_id}>"
    assert ticket_from_message_id(mail.message_id, SECRET) == 1042
    assert mail.message_id.endswith("@example.com")
    assert m["In-Reply-To"] == m["References"] == "<abc@customer.org>"
    assert m["Auto-Submitted"] == auto
    assert m["X-Postdesk-Loop"] == "support@example.com"
    assert m["X-Postdesk-Ticket"] == "1042"
    assert m.get_content_type() == "text/plain" and m.get_content_charset() == "utf-8"
    assert m.get_content().splitlines()[0] == REPLY_MARKER
    assert b"\r\n" in mail.data and b"\n" not in mail.data.replace(b"\r\n", b"")
    assert mail.data.isascii()  # 7-bit: any relay takes it
    assert not m.defects


def test_each_mail_gets_a_fresh_message_id(config):
    a = compose(job(), config, SECRET, NOW)
    b = compose(job(), config, SECRET, NOW)
    assert a.message_id != b.message_id


def test_no_header_injection_from_decoded_crlf(config):
    entries = (Entry(1, "message", True, Person("eve@customer.org", EVIL), "hi", NOW, attachments=(AttachmentInfo(1, EVIL, "text/plain", 2, "ab"),)),)
    mail = compose(job(subject=EVIL, recipient=Person("alice@customer.org", EVIL), entries=entries), config, SECRET, NOW, lambda sha: b"hi")
    names = raw_headers(mail.data)
    assert "Bcc" not in names and names.count("To") == 1 and names.count("Subject") == 1
    m = parse(mail.data)
    assert m["Bcc"] is None
    # The literal text is kept, on one line, without being decoded a second time.
    assert m["Subject"] == "[#1042] =?utf-8?q?Hello=0D=0ABcc:_victim@evil.test?= Bcc: victim2@evil.test"
    assert m["To"].addresses[0].addr_spec == "alice@customer.org"
    assert "\n" not in m["To"].addresses[0].display_name
    (part,) = list(m.iter_attachments())
    assert "\n" not in part.get_filename() and "Bcc" not in part


def test_non_ascii_subject_and_names_round_trip(config):
    j = job(subject="Drucker brennt – «dringend» 🔥", recipient=Person("jose@customer.org", "José Müller, Jr."))
    m = parse(compose(j, config, SECRET, NOW).data)
    assert m["Subject"] == "[#1042] Drucker brennt – «dringend» 🔥"
    assert m["To"].addresses[0].display_name == "José Müller, Jr."
    assert m["To"].addresses[0].addr_spec == "jose@customer.org"


def test_display_name_with_specials_is_quoted():
    assert mailbox('Doe, John "JD"', "jd@x.test") == '"Doe, John \\"JD\\"" <jd@x.test>'
    assert mailbox("", "jd@x.test") == "jd@x.test"


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a b@x.test", "a@x.test>\r\nBcc: y@z", "<a@x.test>", "a@x.test,b@y.test"])
def test_unusable_recipient_is_a_permanent_error(config, bad):
    with pytest.raises(ComposeError):
        compose(job(recipient=Person(bad)), config, SECRET, NOW)


def test_bad_parent_message_id_is_left_out(config):
    assert msgid("<ok@x.test>") == "<ok@x.test>"
    assert msgid("a b@x") == "" and msgid("x>\r\nBcc: y@z") == ""
    m = parse(compose(job(in_reply_to="bad id\r\nBcc: y@z"), config, SECRET, NOW).data)
    assert m["In-Reply-To"] is None and m["Bcc"] is None


def test_update_attachments_are_byte_identical(config):
    blobs = {"a" * 64: bytes(range(256)) * 3, "b" * 64: "Grüße\n".encode()}
    entries = (
        Entry(1, "message", True, None, "see attached", NOW, attachments=(
            AttachmentInfo(1, "data.bin", "application/octet-stream", 768, "a" * 64),
            AttachmentInfo(2, "grüße.txt", "text/plain", 7, "b" * 64),
        )),
    )
    m = parse(compose(job(entries=entries), config, SECRET, NOW, blobs.__getitem__).data)
    parts = list(m.iter_attachments())
    assert [p.get_filename() for p in parts] == ["data.bin", "grüße.txt"]
    assert [p.get_payload(decode=True) for p in parts] == list(blobs.values())


def test_message_attachments_travel_as_opaque_bytes(config):
    raw = b"From: x@y\r\nSubject: inner\r\n\r\nbody\r\n"
    entries = (Entry(1, "message", True, None, "fwd", NOW, attachments=(AttachmentInfo(1, "inner.eml", "message/rfc822", len(raw), "c" * 64),)),)
    m = parse(compose(job(entries=entries), config, SECRET, NOW, lambda sha: raw).data)
    (part,) = list(m.iter_attachments())
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_payload(decode=True) == raw


def test_alert_lists_who_what_and_attachments_and_marks_private(config):
    e = Entry(7, "message", False, Person("carl@stranger.test", "Carl"), "Let me in.", NOW, frozenset({"stranger"}),
              (AttachmentInfo(3, "x.png", "image/png", 2048, "d" * 64),))
    m = parse(compose(job("alert", recipient=Person("team@example.com"), entries=(e,), new_ticket=False), config, SECRET, NOW).data)
    text = m.get_content()
    assert "New reply on ticket [#1042] from Carl <carl@stranger.test>" in text
    assert "Private action (stranger)" in text
    assert "Let me in." in text and "x.png (image/png, 2.0 KB)" in text
    assert not m.is_multipart()


def test_alert_reply_to_is_a_system_address(make_config):
    # reply_to forwarded to the desk, but not itself a system address:
    # staff replies to alerts must still land on a system address.
    cfg = make_config(organization={"reply_to": "hello@example.com"})
    m = parse(compose(job("alert", recipient=Person("team@example.com")), cfg, SECRET, NOW).data)
    assert m["Reply-To"].addresses[0].addr_spec == "support@example.com"
    assert m["From"].addresses[0].addr_spec == "hello@example.com"


def test_update_shows_staff_by_name_and_status_lines(config):
    entries = (
        Entry(1, "message", True, Person("bob@example.com", "Bob", staff=True), "Fixed.", NOW),
        Entry(2, "status", True, None, "Status changed from open to closed", NOW),
    )
    text = parse(compose(job(entries=entries), config, SECRET, NOW).data).get_content()
    assert "Bob wrote on 2026-11-27 12:00 UTC:" in text and "bob@example.com" not in text
    assert "2026-11-27 12:00 UTC: Status changed from open to closed" in text
    assert text.index("Fixed.") < text.index("Status changed")


def test_queue_id_from_postfix_reply():
    assert queue_id(b"2.0.0 Ok: queued as 4BxT2k1Z3n") == "4BxT2k1Z3n"
    assert queue_id("2.0.0 OK stored") == ""


def test_long_headers_fold_and_round_trip(config):
    subject = " ".join(f"word{i}" for i in range(60))  # ~400 characters of ASCII
    name = "Ünïcode " * 20
    mail = compose(job(subject=subject, recipient=Person("alice@customer.org", name.strip())), config, SECRET, NOW)
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    m = parse(mail.data)
    assert m["Subject"] == f"[#1042] {subject[:250].rstrip()}"
    # Split between words, into encoded-words of at most 75 characters.
    # (Python's parser reads the space inside a word and adds one between words.)
    assert " ".join(m["To"].addresses[0].display_name.split()) == name.strip()
    assert all(len(w) <= 75 for w in re.findall(r"=\?[^ ]*\?=", head.decode()))
    assert not m.defects


def test_body_round_trips_exactly(config):
    text = "Line one\n.starts with a dot\nFrom the start\ntrailing space   \n" + "long " * 60 + "\nÜmlaut ✓\n"
    e = Entry(1, "message", True, Person("bob@example.com", "Bob", staff=True), text, NOW)
    body = parse(compose(job(entries=(e,)), config, SECRET, NOW).data).get_content()
    assert text.rstrip() in body.replace("\r\n", "\n")


def test_refusal_is_short_private_and_clean(config):
    note = "Not done:\n  [frobnicate]: unknown command\n  [assign x@evil.example]: x@evil.example is not a staff address\u202e\x1b"
    bob = Person("bob@example.com", "Bob", staff=True)
    mail = compose(job("refusal", recipient=bob, entries=(Entry(9, "system", False, bob, note, NOW),)), config, SECRET, NOW)
    m = parse(mail.data)
    assert m["Subject"] == "Not done: [#1042] Printer on fire"
    assert m["Auto-Submitted"] == "auto-replied" and m["To"] == "Bob <bob@example.com>"
    assert m["Reply-To"] == "Example Inc <support@example.com>"  # a corrected command reaches the ticket
    body = m.get_content()
    assert "[frobnicate]: unknown command" in body and "is not a staff address" in body
    assert "\u202e" not in body and "\x1b" not in body and "Not done:" not in body.splitlines()[3:5]
    assert all(len(line) <= 998 for line in mail.data.split(b"\r\n"))
