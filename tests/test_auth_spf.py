"""SPF (RFC 7208) through ``authenticate``, against a DNS server on loopback."""

from __future__ import annotations

import pytest
from auth_support import CLIENT, OTHER, check, dns_config, dns_fixture, envelope, message  # noqa: F401

DOMAIN = "customer.example"


@pytest.mark.parametrize(
    "record, ip, expected",
    [
        (f"v=spf1 ip4:{CLIENT} -all", CLIENT, "pass"),
        (f"v=spf1 ip4:{CLIENT} -all", OTHER, "fail"),
        (f"v=spf1 ip4:{CLIENT} ~all", OTHER, "softfail"),
        (f"v=spf1 ip4:{CLIENT} ?all", OTHER, "neutral"),
        ("v=spf1 ip4:300.1.2.3 -all", CLIENT, "permerror"),  # RFC 7208 4.6: a syntax error
        ("v=spf1 include:nowhere.example -all", CLIENT, "permerror"),  # include of a name with no SPF (5.2)
    ],
)
def test_spf_results(make_config, dns, record, ip, expected):
    dns.set(DOMAIN, TXT=[record])
    result = check(message(), envelope(ip=ip), dns_config(make_config, dns))
    assert result.spf == expected
    assert result.spf_domain == DOMAIN and result.source == "local"


def test_no_spf_record_is_none(make_config, dns):
    dns.set(DOMAIN, TXT=["some-site-verification=abc"])
    assert check(message(), envelope(), dns_config(make_config, dns)).spf == "none"


def test_spf_pass_via_a_mechanism_and_include(make_config, dns):
    dns.set(DOMAIN, TXT=["v=spf1 include:_spf.provider.example -all"])
    dns.set("_spf.provider.example", TXT=["v=spf1 a:out.provider.example -all"])
    dns.set("out.provider.example", A=[CLIENT])
    assert check(message(), envelope(), dns_config(make_config, dns)).spf == "pass"


@pytest.mark.parametrize("failure", ["servfail", "timeout"])
def test_dns_failure_is_temperror(make_config, dns, failure, caplog):
    getattr(dns, failure)(DOMAIN)
    result = check(message(), envelope(), dns_config(make_config, dns, timeout=0.3))
    assert result.spf == "temperror"
    assert not result.verified and not result.refuted
    assert any("4BxT2k1Z3n: auth=spf:temperror" in r.getMessage() for r in caplog.records)


def test_null_sender_checks_the_helo_name(make_config, dns):
    dns.set("mail.customer.example", TXT=[f"v=spf1 ip4:{CLIENT} -all"])
    config = dns_config(make_config, dns)
    result = check(message(), envelope(sender="", helo="mail.customer.example"), config)
    assert (result.spf, result.spf_domain) == ("pass", "mail.customer.example")
    assert check(message(), envelope(sender="", ip=OTHER, helo="mail.customer.example"), config).spf == "fail"


def test_no_client_address_is_none(make_config, dns):
    dns.set(DOMAIN, TXT=[f"v=spf1 ip4:{CLIENT} -all"])
    assert check(message(), envelope(ip=""), dns_config(make_config, dns)).spf == "none"


def test_answers_are_cached_by_ttl(make_config, dns):
    dns.set(DOMAIN, TXT=[f"v=spf1 ip4:{CLIENT} -all"])
    config = dns_config(make_config, dns)
    check(message(), envelope(), config)
    asked = len(dns.queries)
    assert check(message(subject="again"), envelope(), config).spf == "pass"
    assert len(dns.queries) == asked  # every answer came from the cache



def test_a_new_dns_server_on_a_reused_port_is_not_answered_from_the_old_cache(make_config):
    """The process-wide resolver is keyed by address: a test's server started
    on a port an earlier one had must not be answered from its cache."""
    from postdesk.auth.dns import resolver_for
    from postdesk.testing.dns import DNSServer

    with DNSServer({DOMAIN: {"TXT": ["v=spf1 -all"]}}) as first:
        config = make_config(dns={"nameservers": [first.address], "timeout": 0.5})
        assert resolver_for(config).txt(DOMAIN) == [b"v=spf1 -all"]
    with DNSServer({DOMAIN: {"TXT": ["v=spf1 ?all"]}}, port=first.port):
        assert resolver_for(config).txt(DOMAIN) == [b"v=spf1 ?all"]
