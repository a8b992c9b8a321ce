"""rules/ack.py alone: whether and where the acknowledgement goes."""

from __future__ import annotations

import pytest
from filter_support import make_draft

from postdesk.auth.result import UNCHECKED, AuthResult
from postdesk.filter.decision import Envelope
from postdesk.filter.rules import ack
from postdesk.filter.rules.ack import aligned, is_noreply

VERIFIED = AuthResult(dmarc="pass", dkim="pass", dkim_aligned=True, from_domain="cust.org", source="local")
NONE = AuthResult(from_domain="cust.org", source="local")
REFUTED = AuthResult(spf="fail", from_domain="cust.org", source="local")


def run(config, mail="From: Carol <carol@cust.org>\nSubject: x\n\nx", sender="carol@cust.org", auth=UNCHECKED):
    d = make_draft(mail, config, Envelope(sender, ("support@example.com",), client_address="203.0.113.9"), auth=auth)
    ack.apply(d)
    return d


def test_only_authenticated_authors_by_default(make_config):
    cfg = make_config(trust={"ack_unauthenticated": False})
    assert run(cfg, auth=VERIFIED).ack_to == "carol@cust.org"
    assert run(cfg, auth=NONE).ack_to == ""
    assert run(cfg, auth=UNCHECKED).ack_to == ""
    assert run(cfg, auth=REFUTED).ack_to == ""


def test_ack_unauthenticated_extends_to_none_never_to_refuted(make_config):
    cfg = make_config(trust={"ack_unauthenticated": True})
    assert run(cfg, auth=NONE).ack_to == "carol@cust.org"
    d = run(cfg, auth=REFUTED)
    assert d.ack_to == "" and not d.send_ack


def test_the_envelope_sender_when_it_aligns(make_config):
    """RFC 3834 section 4: automatic responses go to the Return-Path."""
    cfg = make_config(trust={"ack_unauthenticated": True})
    assert run(cfg, sender="bounces+carol@mail.cust.org", auth=VERIFIED).ack_to == "bounces+carol@mail.cust.org"
    # another organisation's envelope sender: only a DKIM/DMARC-authenticated From: is answered, at From:
    assert run(cfg, sender="bounce-123@esp.example", auth=VERIFIED).ack_to == "carol@cust.org"
    assert run(cfg, sender="bounce-123@esp.example", auth=UNCHECKED).ack_to == ""


def test_alignment_by_organisational_domain():
    assert aligned("a@mail.shop.co.uk", "b@shop.co.uk")
    assert not aligned("a@other.co.uk", "b@shop.co.uk")
    assert aligned("a@CUST.org", "b@cust.org")
    assert not aligned("", "b@cust.org")


@pytest.mark.parametrize("address", ["noreply@shop.example", "no-reply@shop.example", "do_not_reply@x.example", "DoNotReply@x.example", "notifications@github.example", "mailer@x.example", "bounce@x.example", "no.reply+abc@x.example"])
def test_noreply_mailboxes(address):
    assert is_noreply(address)


@pytest.mark.parametrize("address", ["norbert@x.example", "replies@x.example", "carol@cust.org", ""])
def test_people(address):
    assert not is_noreply(address)


def test_noreply_and_spam_suppress_and_flag(config):
    d = run(config, mail="From: noreply@shop.example\nSubject: x\n\nx", sender="noreply@shop.example")
    assert d.flags == {"noreply"} and not d.send_ack
    d = run(config, mail="From: carol@cust.org\nX-Spam-Flag: YES\nSubject: x\n\nx")
    assert d.flags == {"spam"} and not d.send_ack
    d = run(config, mail="From: carol@cust.org\nX-Spam-Score: 7.3\nSubject: x\n\nx")
    assert d.flags == {"spam"} and not d.send_ack
    d = run(config, mail="From: carol@cust.org\nX-Spam-Score: 1.2\nX-Spam-Flag: NO\nSubject: x\n\nx")
    assert not d.flags and d.send_ack


def test_an_ack_already_suppressed_adds_no_flags(config):
    d = make_draft("From: noreply@shop.example\nX-Spam-Flag: YES\nSubject: x\n\nx", config)
    d.send_ack = False
    ack.apply(d)
    assert not d.flags and d.ack_to == ""
