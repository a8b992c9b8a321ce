"""``postdesk lmtp``: the LMTP protocol as Postfix's lmtp(8) meets it.

A real server (``postdesk.testing.lmtp.LmtpServer``: the production
``serve`` on a thread) on a unix socket or loopback TCP, a real store, and a
client that reads every reply: one per recipient after DATA (RFC 2033 4.2).
"""

from __future__ import annotations

import logging
import os
import re
import stat

import pytest

from postdesk.outcomes import FAILURE, MISROUTED, SHUTDOWN, TOO_BIG
from postdesk.store import StoreUnavailable
from postdesk.testing.lmtp import LmtpClient, LmtpServer, lmtp_send
from postdesk.testing.wait import free_port
from tests.cli_helpers import make_mail, pad_to

XF = "NAME=mx.customer.example ADDR=192.0.2.7 HELO=mx.customer.example IDENT=4BxT2k1Z3n PROTO=ESMTP SOURCE=REMOTE"


@pytest.fixture
def sockdir(tmp_path):
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    from postdesk.testing.postfix import shared_tmpdir

    d = shared_tmpdir("postdesk-lmtp-")
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lmtp_config(make_config, store_url, sockdir):
    def make(**sections):
        sections.setdefault("lmtp", {"listen": f"unix:{sockdir}/lmtp.sock"})
        return make_config(store_url, **sections)

    return make


@pytest.fixture
def served(lmtp_config):
    """start(config=None, store=None, ingest=None) -> LmtpServer; stopped afterwards."""
    from postdesk.store import Store

    servers, stores = [], []

    def start(config=None, store=None, ingest=None):
        config = config or lmtp_config()
        if store is None:
            store = Store.from_config(config)
            store.init(config.organization.first_ticket_number)
            stores.append(store)
        server = LmtpServer(config, store, ingest=ingest).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()
    for s in stores:
        s.close()


def _tickets(config):
    from postdesk.store import Store

    store = Store.from_config(config)
    try:
        with store.session() as session:
            from postdesk.store.models import Ticket

            return session.query(Ticket).count()
    finally:
        store.close()


def test_new_ticket_one_reply_per_recipient_after_commit(served, caplog):
    server = served()
    caplog.set_level(logging.INFO, logger="postdesk")
    replies = lmtp_send(server.listen, "alice@customer.example", ["support@example.com", "help@example.com"], make_mail(), xforward=XF)
    assert replies == ["250 2.0.0 4BxT2k1Z3n ticket 1000 created"] * 2
    # The milter's line: queue id first, then key=value.
    assert any(re.fullmatch(r"4BxT2k1Z3n: msgid=<[^>]+> from=<alice@customer.example> ticket=1000 outcome=created .*ms=\d+", r.getMessage()) for r in caplog.records), caplog.text
    assert _tickets(server.config) == 1

    # A follow-up on the same session's next transaction, and a redelivery.
    reply = make_mail(subject="Re: [#1000] Printer on fire", body="Now it smokes.\n", message_id="again@customer.example")
    assert lmtp_send(server.listen, "alice@customer.example", ["support@example.com"], reply) == ["250 2.0.0 NOQUEUE ticket 1000 updated"]
    assert lmtp_send(server.listen, "alice@customer.example", ["support@example.com"], reply) == ["250 2.0.0 NOQUEUE ticket 1000 duplicate"]


def test_a_recipient_that_is_not_ours_is_kept_not_bounced(served, caplog):
    server = served()
    caplog.set_level(logging.INFO, logger="postdesk")
    replies = lmtp_send(server.listen, "alice@customer.example", ["bob@elsewhere.example", "support@example.com"], make_mail(), xforward=XF)
    assert replies[0].startswith(f"{MISROUTED.smtp_code} {MISROUTED.dsn} ") and replies[0] == "451 4.3.5 <bob@elsewhere.example> is not a postdesk address; check transport_maps"
    assert replies[1:] == ["250 2.0.0 4BxT2k1Z3n ticket 1000 created"]
    assert "outcome=deferred" in caplog.text and "bob@elsewhere.example" in caplog.text
    # Only misrouted recipients: nothing to deliver, no DATA.
    assert lmtp_send(server.listen, "alice@customer.example", ["bob@elsewhere.example"], make_mail()) == [replies[0]]


def test_store_failure_is_451_for_every_recipient_and_nothing_recorded(served, lmtp_config, caplog):
    class DownStore:
        def record(self, *args, **kwargs):
            raise StoreUnavailable("connection refused")

        def close(self):
            pass

    config = lmtp_config()
    server = served(config, store=DownStore())
    caplog.set_level(logging.INFO, logger="postdesk")
    replies = lmtp_send(server.listen, "alice@customer.example", ["support@example.com", "help@example.com"], make_mail(), xforward=XF)
    assert replies == [f"451 {FAILURE.dsn} postdesk cannot record this message now, try again later"] * 2
    assert '4BxT2k1Z3n: outcome=tempfail reason="StoreUnavailable: connection refused"' in caplog.text


def test_too_big_the_same_answer_as_the_other_adapters(served, lmtp_config, caplog):
    config = lmtp_config(limits={"max_message_bytes": 4096})
    server = served(config)
    caplog.set_level(logging.INFO, logger="postdesk")
    big = pad_to(make_mail(), 6000)
    c = LmtpClient(server.listen)
    try:
        assert "250-SIZE 4096" in c.command("LHLO test.example")
        # Announced with SIZE=: refused before the data.
        r = c.command("MAIL FROM:<alice@customer.example> SIZE=6000")
        assert r == f"{TOO_BIG.smtp_code} {TOO_BIG.dsn} message too big: 6000 bytes, more than the limit of 4096 bytes ([limits] max_message_bytes)"
        # Not announced: read to the end, one 552 per recipient, the session goes on.
        assert c.command("MAIL FROM:<alice@customer.example>").startswith("250")
        assert c.command("RCPT TO:<support@example.com>").startswith("250")
        assert c.command("RCPT TO:<help@example.com>").startswith("250")
        replies = c.data(big, 2)
        assert len(replies) == 2 and all(r.startswith("552 5.3.4 message too big: ") and "4096" in r for r in replies), replies
        assert c.command("MAIL FROM:<alice@customer.example>").startswith("250")
        assert c.command("RCPT TO:<support@example.com>").startswith("250")
        assert c.data(make_mail(), 1) == ["250 2.0.0 NOQUEUE ticket 1000 created"]
    finally:
        c.close()
    assert "outcome=rejected" in caplog.text and "message too big" in caplog.text


def test_long_lines_and_leading_dots_arrive_intact(served):
    server = served()
    long_line = "x" * 5000
    raw = make_mail(body=f"first\n.starts with a dot\n..two dots\n{long_line}\n")
    assert lmtp_send(server.listen, "alice@customer.example", ["support@example.com"], raw) == ["250 2.0.0 NOQUEUE ticket 1000 created"]
    from postdesk.store import Store

    store = Store.from_config(server.config)
    try:
        from postdesk.store.models import Action

        with store.session() as session:
            text = session.query(Action).one().text
    finally:
        store.close()
    assert ".starts with a dot\n..two dots\n" in text and long_line in text


def test_empty_message_is_refused_like_the_pipe(served):
    server = served()
    c = LmtpClient(server.listen)
    try:
        c.command("LHLO test.example")
        c.command("MAIL FROM:<alice@customer.example>")
        c.command("RCPT TO:<support@example.com>")
        assert c.data(b"", 1) == ["554 5.6.0 empty message: no data after DATA"]
    finally:
        c.close()


def _recording_ingest(seen):
    from postdesk.ingest import ingest

    def wrapped(raw, envelope, store, config, **kw):
        seen.append(envelope)
        return ingest(raw, envelope, store, config, **kw)

    return wrapped


def test_xforward_gives_the_original_client_and_queue_id(served):
    seen = []
    server = served(ingest=_recording_ingest(seen))
    c = LmtpClient(server.listen)
    try:
        assert "250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE" in c.command("LHLO test.example")
        assert c.command("XFORWARD NAME=mx.customer.example ADDR=IPV6:2001:db8::7 PORT=4711").startswith("250")
        assert c.command("XFORWARD HELO=[UNAVAILABLE] IDENT=4BxT2k1Z3n").startswith("250")
        c.command("MAIL FROM:<alice@customer.example>")
        c.command("RCPT TO:<support@example.com>")
        assert c.data(make_mail(), 1) == ["250 2.0.0 4BxT2k1Z3n ticket 1000 created"]
        env = seen[-1]
        assert (env.client_address, env.client_name, env.helo, env.queue_id) == ("2001:db8::7", "mx.customer.example", "", "4BxT2k1Z3n")
        # The next transaction starts without them: Postfix sends them again.
        c.command("MAIL FROM:<alice@customer.example>")
        c.command("RCPT TO:<support@example.com>")
        c.data(make_mail(), 1)
        assert (seen[-1].client_address, seen[-1].queue_id) == ("", "")
        # Malformed or inside a transaction: refused, nothing kept.
        assert c.command("XFORWARD ADDR=not-an-ip").startswith("501 5.5.4")
        assert c.command("XFORWARD COLOR=blue").startswith("501 5.5.4")
        c.command("MAIL FROM:<alice@customer.example>")
        assert c.command("XFORWARD ADDR=192.0.2.9").startswith("503 5.5.1")
    finally:
        c.close()


def test_without_xforward_the_peer_vouches_for_nobody(served, lmtp_config):
    """The LMTP peer is Postfix on loopback, inside trusted_networks here:
    mail that claims a staff author must not become staff mail because of it."""
    seen = []
    server = served(ingest=_recording_ingest(seen))
    staff = make_mail(subject="Re: [#1000] x", sender="Bob <bob@example.com>", body="[closed]\n")
    lmtp_send(server.listen, "bob@example.com", ["support@example.com"], staff)
    assert seen[-1].client_address == ""


def test_xforward_is_refused_on_tcp(served, lmtp_config, caplog):
    config = lmtp_config(lmtp={"listen": f"127.0.0.1:{free_port()}"})
    server = served(config)
    c = LmtpClient(server.listen)
    try:
        assert "XFORWARD" not in c.command("LHLO test.example")
        assert c.command("XFORWARD ADDR=127.0.0.1") == "550 5.7.0 XFORWARD is accepted on the unix socket only"
        c.command("MAIL FROM:<alice@customer.example>")
        c.command("RCPT TO:<support@example.com>")
        assert c.data(make_mail(), 1) == ["250 2.0.0 NOQUEUE ticket 1000 created"]
    finally:
        c.close()
    assert "XFORWARD refused" in caplog.text


def test_lmtp_not_smtp(served):
    server = served()
    c = LmtpClient(server.listen)
    try:
        assert c.greeting.startswith("220 ")
        assert c.command("EHLO test.example").startswith("500")
        assert c.command("HELO test.example").startswith("500")
        assert c.command("MAIL FROM:<a@b.example>").startswith("503")
    finally:
        c.close()


def test_stop_answers_idle_sessions_421_and_removes_the_socket(served, sockdir):
    server = served()
    c = LmtpClient(server.listen)
    try:
        c.command("LHLO test.example")
        assert server.stop() == 0
        assert c.reply() == f"{SHUTDOWN.smtp_code} {SHUTDOWN.dsn} postdesk lmtp is shutting down, try again later"
    finally:
        c.file.close()
        c.sock.close()
    assert not os.path.exists(f"{sockdir}/lmtp.sock")


@pytest.mark.parametrize("mode", ["0660", "0600"])
def test_socket_mode_as_configured_whatever_the_umask(served, lmtp_config, sockdir, mode):
    old = os.umask(0)
    try:
        server = served(lmtp_config(lmtp={"listen": f"unix:{sockdir}/lmtp.sock", "socket_mode": mode}))
    finally:
        os.umask(old)
    st = os.stat(server.listen[5:])
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == int(mode, 8)


def test_a_live_socket_is_not_taken_over(served, lmtp_config):
    from postdesk.lmtp.server import run

    config = lmtp_config()
    served(config)
    assert run(config) == 69  # EX_UNAVAILABLE: another postdesk lmtp answers there


def test_null_sender_is_taken(served):
    """Bounces come with MAIL FROM:<>; they are the filter's to judge, not the protocol's."""
    seen = []
    server = served(ingest=_recording_ingest(seen))
    dsn = make_mail(subject="Undelivered Mail Returned to Sender", sender="MAILER-DAEMON <postmaster@customer.example>", body="It bounced.\n")
    (reply,) = lmtp_send(server.listen, "", ["support@example.com"], dsn)
    assert reply.startswith("250 2.0.0 "), reply
    assert seen[-1].sender == ""
