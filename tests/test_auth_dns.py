"""The resolver of sender authentication: bounded cache, errors as temperror."""

from __future__ import annotations

import time

import pytest
from auth_support import dns_fixture  # noqa: F401

from postdesk.auth.dns import DNSTempError, Resolver, _nameserver
from postdesk.testing.dns import DNSServer


def test_cache_is_bounded_least_recently_used_first_out(dns):
    for name in ("a.example", "b.example", "c.example"):
        dns.set(name, TXT=[f"v=spf1 -all {name}"])
    r = Resolver((dns.address,), 0.5, cache_size=2)
    r.txt("a.example"), r.txt("b.example"), r.txt("a.example")
    assert dns.queries.count(("a.example", "TXT")) == 1  # cached
    r.txt("c.example")  # evicts b.example, the least recently used
    r.txt("b.example")
    assert dns.queries.count(("b.example", "TXT")) == 2
    assert dns.queries.count(("a.example", "TXT")) == 1


def test_answers_expire_with_their_ttl(dns, monkeypatch):
    dns.set("a.example", TXT=["one"])
    r = Resolver((dns.address,), 0.5)
    assert r.txt("a.example") == [b"one"]
    dns.set("a.example", TXT=["two"])
    assert r.txt("a.example") == [b"one"]  # within the TTL (300 s)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 301)  # dnspython's cache reads time.time()
    assert r.txt("a.example") == [b"two"]


def test_missing_names_are_empty_not_errors(dns):
    r = Resolver((dns.address,), 0.5)
    assert r.txt("nowhere.example") == [] and r.txt("") == [] and r.txt("a..b") == []


def test_nothing_listening_is_a_temperror():
    down = DNSServer().start()
    down.stop()
    with pytest.raises(DNSTempError):
        Resolver((down.address,), 0.3).txt("customer.example")


@pytest.mark.parametrize("spec, host, port", [("127.0.0.1:5353", "127.0.0.1", 5353), ("[::1]:5353", "::1", 5353), ("192.0.2.1:53", "192.0.2.1", 53)])
def test_nameserver_specs(spec, host, port):
    ns = _nameserver(spec)
    assert (ns.address, ns.port) == (host, port)


def test_one_message_gets_a_bounded_share_of_dns_time():
    """Every lookup inside one budget shares its deadline: slow names cannot
    add up to minutes for one message."""
    import time

    from postdesk.auth.dns import DNSTempError, Resolver, budget

    with DNSServer(timeout=[f"slow{i}.example" for i in range(10)]) as server:
        resolver = Resolver((server.address,), timeout=0.3)
        started = time.monotonic()
        failures = 0
        with budget(0.5):
            for i in range(10):
                try:
                    resolver.txt(f"slow{i}.example")
                except DNSTempError:
                    failures += 1
        assert failures == 10
        assert time.monotonic() - started < 1.5  # not 10 x 0.3 s


def test_control_characters_in_reasons_are_neutralised():
    from postdesk.auth.result import AuthResult

    r = AuthResult(reasons=("spf: evil\nQFAKE123: outcome=created\r\u202e",))
    assert "\n" not in r.reasons[0] and "\r" not in r.reasons[0] and "\u202e" not in r.reasons[0]
