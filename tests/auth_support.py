"""Helpers for the sender-authentication tests: keys, signed mail, DNS.

Test modules import the fixtures ``dns_fixture`` and ``dkim_key_fixture``;
tests ask for them as ``dns`` and ``dkim_key``.

One RSA key per test module (``dkim_key``, made by dkimpy's own key tool,
which runs openssl): key generation is the slow part, everything else is
fast.  Each test gets its own loopback DNS server (``dns``), so records a
test publishes, and the resolver cache, never leak into another test.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import dkim
import pytest
from dkim import dknewkey

from postdesk.auth import authenticate
from postdesk.filter import parse
from postdesk.filter.decision import Envelope
from postdesk.testing.dns import DNSServer

CLIENT = "192.0.2.7"  # TEST-NET-1 (RFC 5737): the sending MTA
OTHER = "198.51.100.9"  # TEST-NET-2: somebody else's host


@dataclass(frozen=True)
class Key:
    private: bytes  # PEM, for dkim.sign
    public: str  # base64 DER, the p= tag

    def record(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.public}"


def make_key(directory) -> Key:
    path = str(directory / "dkim.key")
    dknewkey.GenRSAKeys(path, verbose=False)
    dknewkey.ExtractRSADnsPublicKey(path, path + ".dns", verbose=False)
    text = open(path + ".dns").read()
    public = re.search(r"p=([A-Za-z0-9+/=]+)", text).group(1)
    base64.b64decode(public)  # well-formed
    return Key(open(path, "rb").read(), public)


@pytest.fixture(scope="module", name="dkim_key")
def dkim_key_fixture(tmp_path_factory) -> Key:
    return make_key(tmp_path_factory.mktemp("dkim"))


@pytest.fixture(name="dns")
def dns_fixture():
    with DNSServer() as server:
        yield server


def message(sender="alice@customer.example", subject="Printer on fire", body="It burns.\n", extra="") -> bytes:
    text = (
        f"From: Alice <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash((sender, subject, body)))}@customer.example>\r\n"
        f"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n{extra}\r\n{body.replace(chr(10), chr(13) + chr(10))}"
    )
    return text.encode()


def sign(raw: bytes, key: Key, domain: str, selector: str = "sel") -> bytes:
    sig = dkim.sign(raw, selector.encode(), domain.encode(), key.private, include_headers=[b"from", b"to", b"subject", b"message-id", b"date"])
    return sig + raw


def envelope(sender="alice@customer.example", ip=CLIENT, helo="mail.customer.example", queue_id="4BxT2k1Z3n") -> Envelope:
    return Envelope(sender=sender, recipients=("support@example.com",), queue_id=queue_id, client_address=ip, helo=helo)


def dns_config(make_config, server: DNSServer, timeout: float = 0.5, **trust):
    return make_config(dns={"nameservers": [server.address], "timeout": timeout}, trust={"trusted_networks": [], **trust})


def check(raw: bytes, env: Envelope, config):
    return authenticate(parse(raw), raw, env, config)
