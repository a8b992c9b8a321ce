"""DMARC (RFC 7489): alignment of SPF/DKIM with From:, policy discovery."""

from __future__ import annotations

import subprocess
import sys

import pytest
from auth_support import CLIENT, OTHER, check, dkim_key_fixture, dns_config, dns_fixture, envelope, message, sign  # noqa: F401

from postdesk.auth import dmarc, domains
from postdesk.filter.rules import ack

SPF = f"v=spf1 ip4:{CLIENT} -all"


def test_spf_aligned_pass(make_config, dns):
    dns.set("customer.example", TXT=[SPF])
    dns.set("_dmarc.customer.example", TXT=["v=DMARC1; p=reject"])
    result = check(message(), envelope(), dns_config(make_config, dns))
    assert (result.spf, result.dmarc) == ("pass", "pass")
    assert result.spf_aligned and not result.dkim_aligned and result.verified
    assert "dmarc p=reject at customer.example" in result.reasons


def test_dkim_aligned_pass_when_spf_fails(make_config, dns, dkim_key):
    dns.set("customer.example", TXT=[SPF])
    dns.set("sel._domainkey.customer.example", TXT=[dkim_key.record()])
    dns.set("_dmarc.customer.example", TXT=["v=DMARC1; p=quarantine"])
    # Forwarded: another host, so SPF fails, but the signature survived.
    result = check(sign(message(), dkim_key, "customer.example"), envelope(ip=OTHER), dns_config(make_config, dns))
    assert (result.spf, result.dkim, result.dmarc) == ("fail", "pass", "pass")
    assert result.dkim_aligned and result.verified and not result.refuted


def test_forged_from_fails(make_config, dns):
    dns.set("customer.example", TXT=[SPF])
    dns.set("_dmarc.customer.example", TXT=["v=DMARC1; p=reject"])
    dns.set("attacker.example", TXT=[f"v=spf1 ip4:{OTHER} -all"])
    # The attacker's own envelope passes SPF; From: claims the customer.
    result = check(message(), envelope(sender="bounce@attacker.example", ip=OTHER), dns_config(make_config, dns))
    assert (result.spf, result.dmarc) == ("pass", "fail")
    assert not result.verified and result.refuted and not result.envelope_aligned


def test_no_policy_is_none(make_config, dns):
    dns.set("customer.example", TXT=[SPF])
    result = check(message(), envelope(), dns_config(make_config, dns))
    assert result.dmarc == "none"
    assert result.spf_aligned and result.verified  # an aligned SPF pass still authenticates


def test_organisational_domain_policy_applies_to_a_subdomain(make_config, dns):
    dns.set("mail.example.org", TXT=[f"v=spf1 ip4:{OTHER} -all"])
    dns.set("_dmarc.example.org", TXT=["v=DMARC1; p=reject; sp=quarantine"])
    sender = "bob@sub.example.org"
    result = check(message(sender=sender), envelope(sender="x@mail.example.org", ip=OTHER), dns_config(make_config, dns))
    # mail.example.org and sub.example.org share example.org: relaxed alignment.
    assert (result.spf, result.dmarc) == ("pass", "pass")
    assert ("_dmarc.sub.example.org", "TXT") in dns.queries and ("_dmarc.example.org", "TXT") in dns.queries
    policy = dmarc.lookup_policy("sub.example.org", dmarc_resolver(make_config, dns))
    assert (policy.domain, policy.p) == ("example.org", "quarantine")


def dmarc_resolver(make_config, dns):
    from postdesk.auth.dns import resolver_for

    return resolver_for(dns_config(make_config, dns))


def test_strict_spf_alignment_needs_the_exact_domain(make_config, dns):
    dns.set("mail.example.org", TXT=[f"v=spf1 ip4:{OTHER} -all"])
    env = envelope(sender="x@mail.example.org", ip=OTHER)
    dns.set("_dmarc.example.org", TXT=["v=DMARC1; p=reject; aspf=s"])
    result = check(message(sender="bob@example.org"), env, dns_config(make_config, dns))
    assert (result.spf, result.dmarc) == ("pass", "fail")
    assert not result.spf_aligned and result.refuted


def test_strict_dkim_alignment(make_config, dns, dkim_key):
    dns.set("sel._domainkey.mail.example.org", TXT=[dkim_key.record()])
    raw = sign(message(sender="bob@example.org"), dkim_key, "mail.example.org")
    env = envelope(sender="bob@example.org", ip=OTHER)
    dns.set("_dmarc.example.org", TXT=["v=DMARC1; p=none; adkim=s"])
    assert check(raw, env, dns_config(make_config, dns)).dmarc == "fail"
    dns.set("_dmarc.example.org", TXT=["v=DMARC1; p=none; adkim=r"])
    assert check(raw, env, dns_config(make_config, dns, timeout=0.4)).dmarc == "pass"  # a fresh resolver: no cache


def test_policy_lookup_failure_is_temperror(make_config, dns):
    dns.set("customer.example", TXT=[SPF])
    dns.servfail("_dmarc.customer.example")
    result = check(message(), envelope(), dns_config(make_config, dns))
    assert result.dmarc == "temperror" and result.spf == "pass"


def test_two_records_mean_no_policy(make_config, dns):
    dns.set("_dmarc.customer.example", TXT=["v=DMARC1; p=reject", "v=DMARC1; p=none"])
    assert check(message(), envelope(), dns_config(make_config, dns)).dmarc == "none"


@pytest.mark.parametrize(
    "domain, org",
    [("example.org", "example.org"), ("a.b.example.org", "example.org"), ("shop.example.co.uk", "example.co.uk"), ("co.uk", "co.uk"), ("EXAMPLE.org.", "example.org")],
)
def test_organisational_domain(domain, org):
    assert domains.organisational_domain(domain) == org


def test_alignment_modes():
    assert domains.aligned("mail.example.org", "example.org", "r")
    assert not domains.aligned("mail.example.org", "example.org", "s")
    assert not domains.aligned("example.org", "example.net", "r")
    assert not domains.aligned("", "example.org")
    assert not domains.aligned("a..b", "example.org")  # a name the list cannot split aligns only with itself


def test_dmarc_and_the_ack_rule_share_one_organisational_domain():
    assert dmarc.organisational_domain is domains.organisational_domain
    assert ack.aligned("a@mail.shop.co.uk", "b@shop.co.uk") and not ack.aligned("a@other.co.uk", "b@shop.co.uk")


def test_the_domains_module_imports_no_dns_code():
    code = (
        "import sys; from postdesk.filter.rules import ack; ack.aligned('a@mail.x.co.uk', 'b@x.co.uk'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dns', 'dkim', 'spf', 'authres') or m.startswith('postdesk.auth.dns')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
