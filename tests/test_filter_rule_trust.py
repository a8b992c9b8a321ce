"""rules/trust.py alone: who is staff, and by what proof."""

from __future__ import annotations

from postdesk.auth.result import UNCHECKED, AuthResult
from postdesk.filter.decision import Envelope
from postdesk.filter.rules.trust import sasl_maps_to, staff_proof

OUTSIDE = "203.0.113.5"
VERIFIED = AuthResult(dmarc="pass", from_domain="example.com", source="local")


def test_sasl_login_is_the_whole_address(config):
    assert sasl_maps_to("alice@example.com", "alice@example.com", config)
    assert sasl_maps_to("ALICE@Example.com", "alice@example.com", config)
    # never by the local part alone: login "alice" at any domain is not alice@example.com
    assert not sasl_maps_to("alice", "alice@example.com", config)
    assert not sasl_maps_to("bob", "alice@example.com", config)
    assert not sasl_maps_to("", "alice@example.com", config)
    assert not sasl_maps_to("alice@example.com.evil", "alice@example.com", config)


def test_sasl_login_domain_and_map(make_config):
    cfg = make_config(trust={"sasl_login_domain": "example.com", "sasl_map": {"a.smith": "alice@example.com"}})
    assert sasl_maps_to("alice", "alice@example.com", cfg)
    assert not sasl_maps_to("alice", "alice@other.example", cfg)
    assert sasl_maps_to("a.smith", "alice@example.com", cfg)
    assert not sasl_maps_to("a.smith", "bob@example.com", cfg)  # a mapped login is that address only


def test_staff_proofs(config, make_config):
    t = staff_proof("alice@example.com", Envelope("alice@example.com", (), client_address=OUTSIDE, sasl_username="alice@example.com"), config, UNCHECKED)
    assert (t.claims_staff, t.staff, t.sasl, t.untrusted) == (True, True, True, False)
    t = staff_proof("alice@example.com", Envelope("alice@example.com", (), client_address="127.0.0.1"), config, UNCHECKED)
    assert (t.staff, t.sasl) == (True, False)
    t = staff_proof("alice@example.com", Envelope("alice@example.com", (), client_address=OUTSIDE, sasl_username="alice"), config, UNCHECKED)
    assert (t.staff, t.untrusted) == (False, True)
    t = staff_proof("c@cust.org", Envelope("c@cust.org", (), client_address="127.0.0.1", sasl_username="c@cust.org"), config, UNCHECKED)
    assert (t.claims_staff, t.staff, t.untrusted) == (False, False, False)
    # DMARC proves staff only where the admin enabled it
    outside = Envelope("alice@example.com", (), client_address=OUTSIDE)
    assert not staff_proof("alice@example.com", outside, config, VERIFIED).staff
    assert staff_proof("alice@example.com", outside, make_config(trust={"staff_dmarc": True}), VERIFIED).staff
    assert not staff_proof("alice@example.com", outside, make_config(trust={"staff_dmarc": True}), UNCHECKED).staff


def test_nothing_trusted_by_default():
    from postdesk import config as configmod

    cfg = configmod.defaults()
    t = staff_proof("alice@example.com", Envelope("alice@example.com", (), client_address="127.0.0.1"), cfg, UNCHECKED)
    assert not t.staff and t.untrusted
