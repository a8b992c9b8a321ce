"""``postdesk lmtp`` behind a real, private Postfix: lmtp(8) with XFORWARD.

Postfix's master.cf gets the ``postdesk-lmtp`` service exactly as
contrib/postfix/master-lmtp.cf ships it, and ``transport_maps`` routes the
support addresses to the socket as contrib/postfix/transport-lmtp does;
everything else relays to an aiosmtpd sink.  postdesk lmtp runs as a child
process (``python -m postdesk.lmtp``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postdesk.testing.lmtp import LmtpProcess
from postdesk.testing.postfix import available
from postdesk.testing.wait import wait_for
from tests.conftest import need
from tests.postfix_support import lmtp_desk, mail, settled

pytestmark = pytest.mark.postfix

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = ("support@example.com", "help@example.com")


@pytest.fixture
def lenv(tmp_path):
    ok, why = available()
    need(ok, why)
    e = lmtp_desk(tmp_path)
    try:
        yield e.start()
    finally:
        e.close()


def test_support_mail_is_recorded_with_postfix_queue_id_and_client(lenv):
    lenv.send(mail("Printer on fire", msgid="first@example.org"), rcpts=("support@example.com", "help@example.com", "boss@elsewhere.example"))
    settled(lenv.postfix)
    assert [t["number"] for t in lenv.tickets()] == [1000]
    # Not a support address: relayed as usual; the support copies were delivered to postdesk.
    (other,) = lenv.sink.wait(1)
    assert other.recipients == ["boss@elsewhere.example"]
    log = lenv.postfix.log()
    qid = re.search(r"\]: (\w+): message-id=<first@example\.org>", log).group(1)
    # lmtp(8) logs postdesk's reply per recipient: 250 after the commit.
    for rcpt in SUPPORT:
        assert re.search(rf"{qid}: to=<{rcpt}>, relay=.*lmtp\.sock.*status=sent \(250 2\.0\.0 {qid} ticket 1000 created\)", log), log
    # XFORWARD carried the queue id and the original client into postdesk's line.
    text = wait_for(lambda: qid in lenv.lmtp.text() and lenv.lmtp.text(), 5, "postdesk lmtp's log line")
    assert re.search(rf"{qid}: msgid=<first@example\.org> from=<customer@example\.org> ticket=1000 outcome=created", text), text
    assert "auth=spf:none" in text  # SPF ran on the forwarded client 127.0.0.1, not on nothing


def test_down_server_defers_and_the_retry_lands_once(lenv):
    lenv.lmtp.kill()
    lenv.send(mail("While down", msgid="down@example.org"))
    wait_for(lambda: "status=deferred" in lenv.postfix.log(), 20, "Postfix to defer the delivery to postdesk lmtp")
    assert lenv.tickets() == []
    lenv.lmtp = LmtpProcess(lenv.config_path, lenv.listen, lenv.tmp / "lmtp2.log").start()
    lenv.postfix.flush()
    settled(lenv.postfix)
    assert [t["subject"] for t in lenv.tickets()] == ["While down"]


def test_too_big_bounces_with_5_3_4(tmp_path):
    ok, why = available()
    need(ok, why)
    e = lmtp_desk(tmp_path, extra={"limits": {"max_message_bytes": 4096}})
    try:
        e.start()
        e.send(mail("Huge", msgid="huge@example.org", body="x" * 70 + "\r\n" * 1 + ("y" * 70 + "\r\n") * 100))
        settled(e.postfix)
        assert e.tickets() == []
        # Postfix read SIZE in the LHLO reply and bounced the mail itself.
        assert re.search(r"status=bounced \(.*(5\.3\.4|size)", e.postfix.log()), e.postfix.log()
        (bounce,) = e.sink.wait(1)
        assert bounce.recipients == ["customer@example.org"]
    finally:
        e.close()


def test_check_recognises_the_lmtp_deployment(lenv):
    import io

    from postdesk import check

    out = io.StringIO()
    status = check.run(lenv.config, skip={"store", "permissions", "dns"}, postfix_config=str(lenv.postfix.etc), out=out)
    text = out.getvalue()
    assert "ok: after-queue deployment: lmtp(8) delivers to postdesk lmtp on " in text, text
    assert f"ok: postdesk lmtp answers on {lenv.listen}" in text and "user postfix may open" in text, text
    assert "not in smtpd_milters" not in text and "milter socket" not in text, text
    assert status == 0, text
    lenv.lmtp.kill()
    out = io.StringIO()
    assert check.run(lenv.config, skip={"store", "permissions", "dns"}, postfix_config=str(lenv.postfix.etc), out=out) == 69
    assert "problem: postdesk lmtp does not answer" in out.getvalue() or "problem: no postdesk lmtp socket" in out.getvalue(), out.getvalue()


def test_sigterm_under_load_defers_the_rest_and_it_lands_once(tmp_path):
    ok, why = available()
    need(ok, why)
    e = lmtp_desk(tmp_path, extra={"limits": {"new_tickets_per_sender": 0}})
    try:
        e.start()
        subjects = [f"Burst {i}" for i in range(60)]
        for s in subjects:
            e.send(mail(s))
        wait_for(lambda: len(e.tickets()) >= 3, 30, "the first tickets")
        assert e.lmtp.stop() == 0  # SIGTERM: 421 to idle sessions, replies for those recording, exit 0
        assert "stopped" in e.lmtp.text()
        e.lmtp = LmtpProcess(e.config_path, e.listen, tmp_path / "lmtp2.log").start()
        e.postfix.flush()
        wait_for(e.postfix.queue_empty, 60, "Postfix's queue to empty")
        assert sorted(t["subject"] for t in e.tickets()) == sorted(subjects)  # every one, once
        assert "status=bounced" not in e.postfix.log()
    finally:
        e.close()
