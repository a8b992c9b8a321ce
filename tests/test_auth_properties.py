"""Properties of sender authentication over arbitrary input (hypothesis).

``authenticate`` never raises and always answers in RFC 8601 words, whatever
the bytes; the header we write never carries a line break of the
sender's or a line over 998 octets, and always reads back under our id.
"""

from __future__ import annotations

import authres
from auth_support import dns_config, dns_fixture, envelope, message  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postdesk.auth import authenticate, headers
from postdesk.auth.result import AuthResult
from postdesk.filter import parse

WORDS = {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

header_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)


@FAST
@given(
    raw=st.one_of(
        st.binary(max_size=400),
        st.builds(lambda extra, body: message(extra=extra, body=body), st.sampled_from([
            "", "DKIM-Signature: v=1; a=rsa-sha256; d=customer.example; s=sel; h=from; bh=AAAA; b=AAAA\r\n",
            "DKIM-Signature: garbage\r\n", "ARC-Seal: i=1; cv=none\r\n",
            "Authentication-Results: mx.example.com; dmarc=pass\r\n", "Authentication-Results: mx.example.com; spf\r\n",
            "From: a@b.example, c@d.example\r\n",
        ]), header_text),
    ),
    sender=st.sampled_from(["", "alice@customer.example", "x", "@", "a@[192.0.2.1]", "a@-bad-.example"]),
    helo=st.sampled_from(["", "mail.customer.example", "[192.0.2.7]", "localhost", "a..b"]),
    ip=st.sampled_from(["", "192.0.2.7", "IPv6:2001:db8::1", "not-an-ip"]),
    authserv_id=st.sampled_from(["", "mx.example.com"]),
)
def test_authenticate_never_raises(make_config, dns, raw, sender, helo, ip, authserv_id):
    # One server for all examples (a function-scoped fixture under @given).
    dns.set("customer.example", TXT=["v=spf1 ip4:192.0.2.7 -all"])
    config = dns_config(make_config, dns, authserv_id=authserv_id)
    result = authenticate(parse(raw), raw, envelope(sender=sender, helo=helo, ip=ip), config)
    assert isinstance(result, AuthResult)
    assert {result.spf, result.dkim, result.dmarc, result.arc} <= WORDS
    assert not (result.verified and result.refuted)


@FAST
@given(sender=header_text, helo=header_text, domain=st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-", max_size=300))
def test_written_header_is_one_clean_header(sender, helo, domain):
    result = AuthResult(spf="pass", dkim="pass", dmarc="fail", from_domain=domain, dkim_domains=(domain,) if domain else (), source="local")
    value = headers.write("mx.example.com", result, sender=sender, helo=helo)
    assert "\r" not in value
    lines = value.split("\n")
    assert all(line.startswith("\t") for line in lines[1:])  # only our own folding
    assert all(len(line.encode()) < 998 for line in lines)
    assert authres.AuthenticationResultsHeader.parse_value(value.replace("\n\t", " ")).authserv_id == "mx.example.com"


@FAST
@given(values=st.lists(header_text, max_size=6))
def test_only_a_header_naming_our_id_is_ever_trusted(values):
    idx = headers.trusted_index(values, "mx.example.com")
    if idx is not None:
        assert headers.authserv_id_of(values[idx]) == "mx.example.com"
        assert all(headers.authserv_id_of(v) != "mx.example.com" for v in values[:idx])
    assert headers.trusted_index(values, "") is None
