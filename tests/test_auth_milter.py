"""The milter's Authentication-Results edits (RFC 8601 section 5), under TestCtx.

TestCtx traps (see tests/test_milter_unit.py): never ``import Milter.test``;
its ``chgheader(name, idx, "")`` deletes every header of that name, so the
calls themselves are recorded here to see which index was removed.
"""

from __future__ import annotations

import io

import Milter
import pytest
from auth_support import CLIENT, dns_fixture, envelope, message  # noqa: F401
from Milter import testctx
from milter_support import fresh_opts  # noqa: F401 (autouse)

from postdesk.milter.app import PostdeskMilter


class Recording(PostdeskMilter):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.edits: list[tuple] = []

    def chgheader(self, name, idx, value):
        self.edits.append(("chg", name, idx, value))
        return super().chgheader(name, idx, value)

    def addheader(self, name, value, idx=-1):
        self.edits.append(("add", name, value, idx))
        return super().addheader(name, value, idx)


@pytest.fixture
def milter_store(make_config, tmp_path):
    from postdesk.store import Store

    config = make_config()
    store = Store.from_config(config)
    store.init(config.organization.first_ticket_number)
    yield store
    store.close()


def feed(config, store, raw: bytes, helo="mail.customer.example"):
    from postdesk.ingest import ingest

    seen = {}

    def spy(raw, env, store, config, now=None, prepared=None):
        seen["envelope"] = env
        return ingest(raw, env, store, config, now, prepared=prepared)

    milter = {}

    def factory():
        milter["m"] = Recording(config, store, spy)
        return milter["m"]

    Milter.factory = factory
    ctx = testctx.TestCtx()
    ctx._setsymval("i", "4BxT2k1Z3n")
    ctx._setsymval("j", "mx.example.com")
    assert ctx._connect(host="mail.customer.example", helo=helo, ip=CLIENT) == Milter.CONTINUE
    rc = ctx._feedFile(io.BytesIO(raw), "alice@customer.example", "support@example.com")
    return rc, ctx, milter["m"], seen["envelope"]


def ar(*values):
    return "".join(f"Authentication-Results: {v}\r\n" for v in values)


def test_forged_header_claiming_our_id_is_removed_and_ours_added(make_config, milter_store, dns):
    dns.set("customer.example", TXT=[f"v=spf1 ip4:{CLIENT} -all"])
    config = make_config(dns={"nameservers": [dns.address], "timeout": 0.5})
    raw = message(extra=ar("gmail.example; dkim=pass header.d=customer.example", "mx.example.com; dmarc=pass header.from=customer.example"))
    rc, ctx, m, env = feed(config, milter_store, raw)
    assert rc == Milter.ACCEPT
    assert env.helo == "mail.customer.example"  # HELO reaches the Envelope
    # The second A-R header (index 2) claimed our MTA's name: removed.
    assert ("chg", "Authentication-Results", 2, "") in m.edits
    assert not [e for e in m.edits if e[0] == "chg" and e[1] == "Authentication-Results" and e[2] == 1]
    added = [e for e in m.edits if e[0] == "add" and e[1] == "Authentication-Results"]
    assert len(added) == 1 and added[0][3] == 0  # at the top (RFC 8601 section 4)
    value = added[0][2].replace("\n\t", " ")
    assert value.startswith("mx.example.com;") and "spf=pass smtp.mailfrom=alice@customer.example" in value
    assert "dmarc=none" in value  # the forged pass said nothing to us
    assert (ctx._msg.get_all("Authentication-Results") or [])[-1].replace("\n\t", " ") == value


def test_trusted_verifier_header_stays_and_copies_below_it_go(make_config, milter_store, dns):
    config = make_config(dns={"nameservers": [dns.address], "timeout": 0.5}, trust={"trusted_networks": [], "authserv_id": "mx.example.com"})
    genuine = "mx.example.com; spf=pass smtp.mailfrom=alice@customer.example; dmarc=pass header.from=customer.example"
    forged = "mx.example.com; dkim=pass header.d=customer.example"
    rc, ctx, m, env = feed(config, milter_store, message(extra=ar(genuine, forged)))
    assert rc == Milter.ACCEPT
    assert [e for e in m.edits if e[1] == "Authentication-Results"] == [("chg", "Authentication-Results", 2, "")]
    assert dns.queries == []  # the trusted verifier's verdict was used, no lookups


def test_null_sender_helo_identity(make_config, milter_store, dns):
    dns.set("mail.customer.example", TXT=[f"v=spf1 ip4:{CLIENT} -all"])
    config = make_config(dns={"nameservers": [dns.address], "timeout": 0.5})

    Milter.factory = lambda: Recording(config, milter_store)
    ctx = testctx.TestCtx()
    ctx._setsymval("i", "4BxT2k1Z3n")
    ctx._connect(host="mail.customer.example", helo="mail.customer.example", ip=CLIENT)
    rc = ctx._feedFile(io.BytesIO(message(subject="Delivery report")), "", "support@example.com")
    assert rc == Milter.ACCEPT
    assert ("mail.customer.example", "TXT") in dns.queries
