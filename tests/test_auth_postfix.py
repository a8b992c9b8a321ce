"""Sender authentication through a real, private Postfix (see test_milter_postfix).

The milter checks SPF/DMARC against a DNS server on loopback, removes a
forged Authentication-Results header claiming Postfix's own name, and adds
its own at the top of the support copy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from postdesk.testing.dns import DNSServer
from postdesk.testing.postfix import available
from postdesk.testing.wait import unix_socket_open, wait_for
from tests.conftest import need
from tests.postfix_support import mail, milter_desk

pytestmark = pytest.mark.postfix

MTA = "postdesk-test.localdomain"  # the private Postfix's myhostname: the milter macro j


@pytest.fixture
def dns():
    with DNSServer() as server:
        server.set("example.org", TXT=["v=spf1 ip4:127.0.0.1 -all"])
        server.set("_dmarc.example.org", TXT=["v=DMARC1; p=reject"])
        yield server


@pytest.fixture
def env(tmp_path, dns):
    ok, why = available()
    need(ok, why)
    e = milter_desk(tmp_path, {"dns": {"nameservers": [dns.address], "timeout": 2}})
    try:
        e.start()
        yield e
    finally:
        e.close()


def test_forged_header_is_replaced_by_our_verdict(env, dns):
    forged = f"Authentication-Results: {MTA}; dkim=pass header.d=example.org; dmarc=pass header.from=example.org\r\n"
    foreign = "Authentication-Results: mx.other.example; spf=softfail smtp.mailfrom=example.org\r\n"
    assert env.send(mail("Printer on fire", extra=foreign + forged))[0] == 250
    (got,) = env.sink.wait(1)
    values = [" ".join(v.split()) for v in got.message.get_all("Authentication-Results")]
    ours = [v for v in values if v.startswith(MTA + ";")]
    assert ours == [f"{MTA}; spf=pass smtp.mailfrom=customer@example.org; dkim=none; dmarc=pass header.from=example.org"]
    assert "mx.other.example; spf=softfail smtp.mailfrom=example.org" in values  # not ours to judge: left in place
    head = got.data.split(b"\r\n\r\n", 1)[0].decode()
    assert head.index("Authentication-Results: " + MTA) < head.index("mx.other.example")  # ours on top
    assert ("example.org", "TXT") in dns.queries and ("_dmarc.example.org", "TXT") in dns.queries


@pytest.fixture
def verified_env(tmp_path, dns):
    """A verifier milter (tests/auth_verifier_milter.py) before postdesk, trusted by authserv-id."""
    ok, why = available()
    need(ok, why)
    e = milter_desk(tmp_path, {"dns": {"nameservers": [dns.address], "timeout": 2}, "trust": {"authserv_id": "mx.example.com"}})
    sock = e.sockdir / "verifier.sock"
    script = Path(__file__).parent / "auth_verifier_milter.py"
    results = "spf=fail smtp.mailfrom=customer@example.org; dmarc=fail header.from=example.org"
    verifier = subprocess.Popen([sys.executable, str(script), str(sock), "mx.example.com", results], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: unix_socket_open(str(sock)), 15, "the verifier's socket")
        e.postfix.milter_socket = f"unix:{sock}, unix:{e.socket_path}"
        e.start()
        yield e
    finally:
        verifier.kill()
        verifier.wait(10)
        e.close()


def test_verifier_before_postdesk_is_believed_and_forgeries_removed(verified_env, dns):
    env = verified_env
    forged = "Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=customer@example.org; dmarc=pass header.from=example.org\r\n"
    assert env.send(mail("Printer on fire", msgid="verified@example.org", extra=forged))[0] == 250
    (got,) = env.sink.wait(1)
    values = [" ".join(v.split()) for v in got.message.get_all("Authentication-Results")]
    # The verifier's header (it saw a failure) stays; the client's copy claiming a pass is gone.
    assert values == ["mx.example.com; spf=fail smtp.mailfrom=customer@example.org; dmarc=fail header.from=example.org"]
    wait_for(lambda: "msgid=<verified@example.org>" in env.milter.text(), 5, "the milter's log line")
    line = next(x for x in env.milter.text().splitlines() if "msgid=<verified@example.org>" in x)
    assert "auth=spf:fail,dkim:none,dmarc:fail" in line
    assert dns.queries == []  # the verifier's word, no lookups of our own

