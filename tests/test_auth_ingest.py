"""Authentication inside ``ingest``: DNS trouble never loses mail.

Runs on SQLite and PostgreSQL (the ``store`` fixture): the message is
recorded whatever DNS does, and the log line says what was found.
"""

from __future__ import annotations

import logging

from auth_support import CLIENT, dns_config, dns_fixture, envelope, message  # noqa: F401

from postdesk.ingest import ingest
from postdesk.outcomes import Outcome
from postdesk.testing.dns import DNSServer


def log_lines(caplog, queue_id="4BxT2k1Z3n"):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(queue_id + ":")]


def test_dns_down_is_temperror_and_the_mail_is_recorded(make_config, store_url, store, caplog):
    caplog.set_level(logging.INFO, logger="postdesk")
    down = DNSServer().start()
    down.stop()  # a port where nothing answers any more
    config = make_config(store_url, dns={"nameservers": [down.address], "timeout": 0.3})
    result = ingest(message(), envelope(), store, config)
    assert result.outcome == Outcome.CREATED
    auth = result.decision.auth
    assert (auth.spf, auth.dmarc) == ("temperror", "temperror")
    assert not auth.verified and not auth.refuted
    assert store.show_ticket(result.ticket)["actions"]
    lines = log_lines(caplog)
    assert any("auth=spf:temperror,dkim:none,dmarc:temperror" in line and "outcome=created" in line for line in lines)
    assert any(line.startswith("4BxT2k1Z3n: auth=") and "reason=" in line for line in lines)  # the warning


def test_log_line_carries_the_verdict(make_config, store_url, store, dns, caplog):
    caplog.set_level(logging.INFO, logger="postdesk")
    dns.set("customer.example", TXT=[f"v=spf1 ip4:{CLIENT} -all"])
    dns.set("_dmarc.customer.example", TXT=["v=DMARC1; p=none"])
    config = make_config(store_url, dns={"nameservers": [dns.address], "timeout": 0.5})
    result = ingest(message(), envelope(), store, config)
    assert result.outcome == Outcome.CREATED and result.decision.auth.verified
    assert any("outcome=created" in line and "auth=spf:pass,dkim:none,dmarc:pass" in line for line in log_lines(caplog))


def test_an_internal_error_is_temperror_with_one_warning(make_config, store_url, store, dns, caplog, monkeypatch):
    from postdesk.auth import dkim as dkimmod

    def broken(raw, resolver):
        raise RuntimeError("boom")

    monkeypatch.setattr(dkimmod, "check", broken)
    caplog.set_level(logging.INFO, logger="postdesk")
    result = ingest(message(), envelope(), store, make_config(store_url, dns={"nameservers": [dns.address]}))
    assert result.outcome == Outcome.CREATED
    assert result.decision.auth.dkim == "temperror"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "4BxT2k1Z3n" in warnings[0].getMessage() and "RuntimeError: boom" in warnings[0].getMessage()


def test_verification_off_checks_nothing(make_config, dns):
    from auth_support import check

    config = dns_config(make_config, dns, verify=False)
    result = check(message(), envelope(), config)
    assert result.source == "none" and dns.queries == []


CRAFTED_FROM = "=?utf-8?q?(?= <alice@customer.example> =?utf-8?q?)?= <x@evil.example>"


def test_a_from_that_parses_two_ways_is_judged_for_the_author_recorded(make_config, store_url, store, dns):
    """The attacker's SPF passes for evil.example; the desk reads the author as
    alice@customer.example.  The verdict must be about the author recorded:
    refuted (customer.example's DMARC fails), private, no Cc, no ack."""
    dns.set("evil.example", TXT=[f"v=spf1 ip4:{CLIENT} -all"])
    dns.set("customer.example", TXT=["v=spf1 -all"])
    dns.set("_dmarc.customer.example", TXT=["v=DMARC1; p=reject"])
    config = make_config(store_url, dns={"nameservers": [dns.address], "timeout": 0.5}, trust={"ack_unauthenticated": True})
    raw = message().replace(b"From: Alice <alice@customer.example>", f"From: {CRAFTED_FROM}\r\nCc: accomplice@evil.example".encode())
    result = ingest(raw, envelope(sender="x@evil.example"), store, config)
    assert result.outcome == Outcome.CREATED
    d = result.decision
    assert d.author == "alice@customer.example"
    assert d.auth.refuted and not d.auth.verified and "forged" in d.flags
    shown = store.show_ticket(result.ticket)
    assert not shown["actions"][0]["public"]
    assert [p["address"] for p in shown["participants"]] == ["alice@customer.example"]
    assert store.list_outbox() == []  # no acknowledgement, no alert to anyone


def test_several_from_addresses_are_not_vouched_for(make_config, store_url, store, dns):
    dns.set("evil.example", TXT=[f"v=spf1 ip4:{CLIENT} -all"])
    config = make_config(store_url, dns={"nameservers": [dns.address], "timeout": 0.5})
    raw = message().replace(b"From: Alice <alice@customer.example>", b"From: alice@customer.example, x@evil.example")
    d = ingest(raw, envelope(sender="x@evil.example"), store, config).decision
    assert d.author == "alice@customer.example" and d.auth.from_domain == ""
    assert d.auth.refuted and "forged" in d.flags
