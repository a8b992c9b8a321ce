"""Hypothesis strategies for mail: header-shaped and MIME-shaped bytes.

Shared by the property tests (tests/test_filter_properties.py) and the fuzz
run (tests/fuzz/fuzz_filter.py).  The messages are built from pieces real
mail is made of (encoded-words, folded lines, multipart boundaries, odd
charsets, CR/LF/NUL where they do not belong, our own tag and Message-IDs),
so the search reaches past the first line of the parser.
"""

from __future__ import annotations

from datetime import datetime

from filter_support import MemoryKnown, ticket_info
from hypothesis import strategies as st

from postdesk import config as configmod
from postdesk.auth.result import AuthResult
from postdesk.filter.decision import Decision, Envelope, Kind

WORDS = ["Re:", "AW:", "Fwd:", "[#1042]", "[#7]", "[pvt]", "[closed]", "Printer", "Out of office:", "Automatic reply:", "ü", "\u202e", "\x00", "\r", "\n", " ", "\t"]
ENCODED = [
    "=?utf-8?q?Dr=C3=BCcker?=",
    "=?iso-8859-1?q?caf=E9?=",
    "=?utf-8?b?w7w=?=",
    "=?unknown-8bit?q?x?=",
    "=?utf-8?q?a=0D=0Ab?=",
    "=?utf-8?q?=00?=",
    "=?",
    "?=",
]
ADDRESSES = ["c@cust.org", "alice@example.com", "support@example.com", "noreply@shop.example", "MAILER-DAEMON@mx.example", "", "<>", "a@b", "\"x, y\" <x@y.example>", "(comment) <z@z.example>"]
HEADER_NAMES = ["From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Auto-Submitted", "Precedence", "List-Id", "X-Postdesk-Loop", "X-Spam-Flag", "X-Spam-Score", "Sender", "MIME-Version"]
CONTENT_TYPES = [
    "text/plain; charset=utf-8",
    "text/plain; charset=x-unknown",
    "text/html",
    "multipart/mixed; boundary=b",
    "multipart/alternative; boundary=b",
    "multipart/report; report-type=delivery-status; boundary=b",
    "multipart/mixed",
    "message/rfc822",
    "application/octet-stream; name*=utf-8''%C3%BC.pdf",
]

text_piece = st.one_of(st.sampled_from(WORDS), st.sampled_from(ENCODED), st.text(max_size=20))
header_value = st.lists(text_piece, max_size=8).map(" ".join)


@st.composite
def header_line(draw) -> str:
    name = draw(st.one_of(st.sampled_from(HEADER_NAMES), st.from_regex(r"[A-Za-z-]{1,12}", fullmatch=True)))
    if name in ("From", "To", "Cc", "Sender"):
        value = ", ".join(draw(st.lists(st.sampled_from(ADDRESSES), min_size=1, max_size=3)))
    elif name in ("Message-ID", "In-Reply-To", "References"):
        value = " ".join(f"<{draw(st.sampled_from(['m1@x', 'pd.1042.0011223344556677.0123456789@example.com', '', 'a b@c', '<<']))}>" for _ in range(draw(st.integers(0, 3))))
    elif name == "Content-Type":
        value = draw(st.sampled_from(CONTENT_TYPES))
    else:
        value = draw(header_value)
    fold = draw(st.sampled_from(["", "\r\n ", "\n\t"]))
    return f"{name}: {fold}{value}"


@st.composite
def body(draw) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.text(max_size=60),
                st.sampled_from(["--b", "--b--", "\r\n", "> quoted", "On Mon, X wrote:", "-- ", "<p>html</p>", "Content-Type: text/plain", "=C3=BC", "begin 644 x"]),
            ),
            max_size=12,
        )
    )
    return "\r\n".join(parts)


@st.composite
def raw_mail(draw) -> bytes:
    """Bytes that look like mail: a header of plausible fields, a blank line, a body."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))  # and now and then anything at all
    headers = draw(st.lists(header_line(), max_size=12))
    text = "\r\n".join(headers) + "\r\n\r\n" + draw(body())
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        raw = raw.replace(b"\xc3\xbc", b"\xfc")  # raw 8-bit Latin-1 where UTF-8 was
    return raw


AUTH_WORDS = ["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]

auth_result = st.builds(
    AuthResult,
    spf=st.sampled_from(AUTH_WORDS),
    dkim=st.sampled_from(AUTH_WORDS),
    dmarc=st.sampled_from(AUTH_WORDS),
    spf_aligned=st.booleans(),
    dkim_aligned=st.booleans(),
    envelope_aligned=st.booleans(),
    source=st.sampled_from(["none", "local"]),
)

envelope = st.builds(
    Envelope,
    sender=st.sampled_from(["c@cust.org", "", "alice@example.com", "bounces+x@cust.org", "MAILER-DAEMON"]),
    recipients=st.lists(st.sampled_from(["support@example.com", "help@example.com", "c@cust.org", "x\r\ny@z"]), min_size=1, max_size=3).map(tuple),
    client_address=st.sampled_from(["203.0.113.9", "127.0.0.1", "::1", "", "not-an-ip"]),
    sasl_username=st.sampled_from(["", "alice@example.com", "alice", "bob"]),
)


# --- what the generated mail is decided against, and the invariants -------

NOW = datetime(2026, 1, 1, 12, 0, 0)
CONFIG = configmod.from_dict(
    {
        "organization": {"system_addresses": ["support@example.com", "help@example.com"], "reply_to": "support@example.com", "staff": ["@example.com"]},
        "trust": {"trusted_networks": ["127.0.0.0/8"], "ack_unauthenticated": True},
        "limits": {"new_tickets_per_sender": 2},
    },
    source="<properties>",
)
KNOWN = MemoryKnown(
    [ticket_info(1042, "c@cust.org", ["colleague@cust.org"]), ticket_info(7, "x@y.example", status="closed")],
    {"m1@x": 1042},
    opened=[("c@cust.org", NOW, False), ("c@cust.org", NOW, False)],
)
BAD = ("\r", "\n", "\x00")


def check(d: Decision) -> None:
    """The invariants every Decision keeps (also used by the fuzz run)."""
    assert isinstance(d, Decision)
    for name in ("subject", "original_subject", "author", "author_name", "message_id", "message_key", "ack_to", "reason"):
        value = getattr(d, name)
        assert isinstance(value, str) and not any(c in value for c in BAD), (name, value)
    for a in d.cc + d.references:
        assert not any(c in a for c in BAD), a
    if d.ticket is not None:
        assert KNOWN.ticket(d.ticket) is not None, d.ticket
    if d.kind is Kind.FOLLOWUP:
        assert d.ticket is not None
    if d.close:
        assert d.staff
    if "forged" in d.flags:
        assert not (d.public or d.send_ack or d.notify_team)
    if d.send_ack:
        assert "@" in d.ack_to and not CONFIG.is_own_address(d.ack_to)
    if d.kind is Kind.DEFER:
        assert "too many new tickets" in d.reason
