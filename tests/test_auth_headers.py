"""Authentication-Results (RFC 8601): only our verifier's header is believed."""

from __future__ import annotations

import authres
import pytest
from auth_support import CLIENT, check, dns_config, dns_fixture, envelope, message  # noqa: F401

from postdesk.auth import headers
from postdesk.auth.result import AuthResult

OURS = "mx.example.com"
PASS_ALL = f"{OURS}; spf=pass smtp.mailfrom=alice@customer.example; dkim=pass header.d=customer.example; dmarc=pass header.from=customer.example"


def with_ar(*values: str) -> bytes:
    return message(extra="".join(f"Authentication-Results: {v}\r\n" for v in values))


def test_trusted_header_from_our_authserv_id_is_used(make_config, dns):
    # Nothing is published: a local check would say none everywhere.
    result = check(with_ar(PASS_ALL), envelope(), dns_config(make_config, dns, authserv_id=OURS))
    assert result.source == f"authserv-id:{OURS}"
    assert (result.spf, result.dkim, result.dmarc) == ("pass", "pass", "pass")
    assert result.dkim_domains == ("customer.example",) and result.spf_aligned and result.dkim_aligned
    assert result.verified
    assert dns.queries == []  # the verifier's word was enough: no DNS at all


def test_header_of_another_authserv_id_is_ignored(make_config, dns):
    forged = PASS_ALL.replace(OURS, "mx.attacker.example")
    result = check(with_ar(forged), envelope(), dns_config(make_config, dns, authserv_id=OURS))
    assert result.source == "local"
    assert (result.spf, result.dkim, result.dmarc) == ("none", "none", "none")
    assert not result.verified


def test_nothing_is_trusted_without_authserv_id(make_config, dns):
    result = check(with_ar(PASS_ALL), envelope(), dns_config(make_config, dns))
    assert result.source == "local" and not result.verified


def test_only_the_topmost_header_with_our_id_counts(make_config, dns):
    # Our verifier (on top) found a DMARC failure; a copy below it, sent by
    # the client, claims a pass under our id.
    ours = f"{OURS}; spf=fail smtp.mailfrom=alice@customer.example; dmarc=fail header.from=customer.example"
    result = check(with_ar(ours, PASS_ALL), envelope(), dns_config(make_config, dns, authserv_id=OURS))
    assert (result.spf, result.dmarc) == ("fail", "fail")
    assert result.refuted and not result.verified


def test_dmarc_about_another_from_domain_is_not_taken(make_config, dns):
    other = PASS_ALL.replace("header.from=customer.example", "header.from=elsewhere.example")
    result = check(with_ar(other), envelope(), dns_config(make_config, dns, authserv_id=OURS))
    assert result.dmarc == "none"
    assert any("header.from=elsewhere.example" in r for r in result.reasons)


def test_missing_dmarc_is_evaluated_here_from_the_trusted_results(make_config, dns):
    dns.set("_dmarc.customer.example", TXT=["v=DMARC1; p=reject"])
    dkim_only = f"{OURS}; dkim=pass header.d=customer.example"
    result = check(with_ar(dkim_only), envelope(), dns_config(make_config, dns, authserv_id=OURS))
    assert (result.dkim, result.dmarc, result.source) == ("pass", "pass", f"authserv-id:{OURS}")


def test_unreadable_trusted_header_decides_nothing(make_config, dns):
    result = check(with_ar(f"{OURS}; dmarc=pass; spf"), envelope(), dns_config(make_config, dns, authserv_id=OURS))
    assert result.spf == "temperror" and not result.verified and not result.refuted


@pytest.mark.parametrize(
    "value, expected",
    [
        ("mx.example.com; none", "mx.example.com"),
        ("  MX.Example.COM (our verifier) 1; spf=pass", "mx.example.com"),
        ("(comment) mx.example.com;", "mx.example.com"),
        ("mx.example.com", "mx.example.com"),
        ("", ""),
    ],
)
def test_authserv_id_is_read_leniently(value, expected):
    assert headers.authserv_id_of(value) == expected


def test_written_header_round_trips_through_authres():
    result = AuthResult(spf="pass", dkim="pass", dmarc="pass", from_domain="customer.example", dkim_domains=("customer.example",), source="local")
    value = headers.write(OURS, result, sender="alice@customer.example")
    parsed = authres.AuthenticationResultsHeader.parse_value(value.replace("\n\t", " "))
    assert parsed.authserv_id == OURS
    assert [(r.method, r.result) for r in parsed.results] == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")]
    assert all(len(line) < 998 for line in value.split("\n"))
    assert headers.read(value.replace("\n\t", " ")).dmarc == "pass"


def test_written_header_never_carries_envelope_syntax():
    value = headers.write(OURS, AuthResult(source="local"), sender='"x; dmarc=pass"@evil.example')
    assert "dmarc=pass" not in value.replace("dmarc=none", "")
    assert headers.write(OURS, AuthResult()) == f"{OURS}; none"


def test_arc_word_is_written_when_there_is_a_chain():
    value = headers.write(OURS, AuthResult(source="local", arc="pass"))
    assert "; arc=pass" in value.replace("\n\t", " ")
    assert " arc=" not in headers.write(OURS, AuthResult(source="local")).replace("\n\t", " ")


def test_a_header_below_the_first_received_is_never_believed(make_config, dns):
    """The verifier skipped this message (size limit, a host it ignores): the
    only header with our id is the one the client sent, below the Received:
    our MTA added.  It is not believed; the mail is verified here."""
    raw = b"Received: from client.example by mx.example.com; Wed, 02 Dec 2026 10:00:00 +0000\r\n" + with_ar(PASS_ALL)
    result = check(raw, envelope(), dns_config(make_config, dns, authserv_id=OURS))
    assert result.source == "local" and not result.verified
    on_top = f"Authentication-Results: {PASS_ALL}\r\n".encode() + raw
    assert check(on_top, envelope(), dns_config(make_config, dns, authserv_id=OURS)).source == f"authserv-id:{OURS}"


def test_positions_say_which_headers_came_from_outside():
    items = [("Authentication-Results", "a"), ("Received", "x"), ("Authentication-Results", "b")]
    assert headers.positions(items) == (["a", "b"], [False, True])
    assert headers.trusted_index(["x; spf=pass", f"{OURS}; spf=pass"], OURS, [False, True]) is None
    assert headers.trusted_index([f"{OURS}; spf=pass"], OURS, [False]) == 0


@pytest.mark.parametrize("helo", ["mx.evil.example\n", "mx.evil.example\nX-Injected: 1"])
def test_written_header_drops_a_helo_with_a_line_break(helo):
    """A HELO name is the client's word: one ending in LF (which a ``$``
    anchored pattern would still accept) must not reach our header, where
    it would end the field and start a forged one."""
    value = headers.write(OURS, AuthResult(source="local"), sender="", helo=helo)
    assert "evil" not in value
    assert "\n" not in value.replace("\n\t", "")
