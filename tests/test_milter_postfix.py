"""The milter in a real, private Postfix, relaying to an aiosmtpd sink.

Each test starts its own Postfix instance (127.0.0.1 high port, own queue),
the milter as a child process (``python -m postdesk.milter``; libmilter is
one per process) on a unix socket, and a sink.  Needs root and the Debian
postfix package; skips without them (fails under POSTDESK_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import os
import re
import smtplib
import sqlite3
import subprocess
import sys
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest

from postdesk.clock import utcnow
from postdesk.notifier.worker import Worker
from postdesk.testing.postfix import available
from postdesk.testing.wait import wait_for
from tests.conftest import need
from tests.postfix_support import mail, milter_desk, settled

pytestmark = pytest.mark.postfix

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path):
    ok, why = available()
    need(ok, why)
    e = milter_desk(tmp_path)
    try:
        e.start()
        yield e
    finally:
        e.close()


def test_support_copy_is_tagged_and_recorded(env):
    code, _ = env.send(mail("Printer on fire", msgid="first@example.org"))
    assert code == 250
    (got,) = env.sink.wait(1)
    assert got.header("Subject") == "[#1000] Printer on fire"
    assert got.header("X-Postdesk-Ticket") == "1000"
    assert got.header("X-Postdesk-Outcome") == "created"
    tickets = env.tickets()
    assert [t["number"] for t in tickets] == [1000]
    # The one log line, with Postfix's queue id first.
    found = wait_for(lambda: re.search(r"\]: (\w+): message-id=<first@example\.org>", env.postfix.log()), 5, "Postfix's cleanup line")
    qid = found.group(1)
    wait_for(lambda: f"{qid}: msgid=<first@example.org>" in env.milter.text(), 5, "the milter's log line")
    assert "outcome=created" in env.milter.text() and "ticket=1000" in env.milter.text()


def test_other_mail_passes_untouched(env):
    raw = mail("Lunch on Friday?", msgid="lunch@example.org")
    code, _ = env.send(raw, rcpts=("friend@example.net",))
    assert code == 250
    (got,) = env.sink.wait(1)
    # Postfix adds only its Received: header in front; everything we sent is
    # there byte for byte, and nothing of ours.
    assert got.data.rstrip(b"\r\n").endswith(raw.rstrip(b"\r\n"))
    assert b"X-Postdesk" not in got.data
    assert env.tickets() == []
    assert "lunch@example.org" not in env.milter.text()


def test_tagged_followup_is_appended(env):
    assert env.send(mail("Printer on fire", msgid="a1@example.org"))[0] == 250
    env.sink.wait(1)
    reply = mail("Re: [#1000] Printer on fire", msgid="a2@example.org", extra="In-Reply-To: <a1@example.org>\r\n", body="Now it smokes.\r\n")
    assert env.send(reply)[0] == 250
    msgs = env.sink.wait(2)
    assert msgs[1].header("Subject") == "Re: [#1000] Printer on fire"  # never tagged twice
    assert msgs[1].header("X-Postdesk-Outcome") == "updated"
    assert [t["number"] for t in env.tickets()] == [1000]
    ticket = env.store.show_ticket(1000)
    assert len(ticket["actions"]) == 2
    assert "smokes" in ticket["actions"][1]["text"]


def test_locked_store_gives_451_and_the_retry_records_one_ticket(env):
    raw = mail("Locked out", msgid="locked@example.org")
    lock = sqlite3.connect(env.db, timeout=0.1)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        code, text = env.send(raw)
    finally:
        lock.rollback()
        lock.close()
    assert code == 451 and "4.3.0" in text, (code, text)
    assert env.tickets() == []
    # Logged once, at the boundary: one error line with its (chained) traceback.
    assert env.milter.text().count("outcome=tempfail") == 1
    assert "Traceback" in env.milter.text()
    code, _ = env.send(raw)  # the sender's MTA retries the same message
    assert code == 250
    assert [t["number"] for t in env.tickets()] == [1000]
    assert len(env.sink.wait(1)) == 1


def test_unreachable_store_gives_451_and_the_retry_records_one_ticket(env):
    raw = mail("Database gone", msgid="gone@example.org")
    away = env.db.with_suffix(".away")
    env.db.rename(away)
    try:
        code, text = env.send(raw)
    finally:
        away.rename(env.db)
    assert code == 451 and "4.3.0" in text, (code, text)
    assert env.sink.messages == []
    assert env.send(raw)[0] == 250
    assert env.send(raw)[0] == 250  # delivered twice after all: still one ticket
    assert [t["number"] for t in env.tickets()] == [1000]
    assert len(env.store.show_ticket(1000)["actions"]) == 1
    assert sorted(m.header("X-Postdesk-Outcome") for m in env.sink.wait(2)) == ["created", "duplicate"]


def test_milter_killed_mid_stream_tempfails_and_the_retry_is_recorded_once(env):
    raw = mail("Half a message", msgid="half@example.org", body="line\r\n" * 2000)
    head, body = raw[: len(raw) // 2], raw[len(raw) // 2 :]
    with smtplib.SMTP("127.0.0.1", env.postfix.port, timeout=30) as s:
        s.ehlo()
        assert s.mail("customer@example.org")[0] == 250
        assert s.rcpt("support@example.com")[0] == 250
        assert s.docmd("DATA")[0] == 354
        s.send(head)
        env.milter.kill()
        s.send(body + b"\r\n.\r\n")
        code, text = s.getreply()
    assert 400 <= code < 500, (code, text)
    assert env.tickets() == []
    env.milter.start()  # a new milter removes the stale socket and serves again
    assert env.send(raw)[0] == 250
    assert [t["number"] for t in env.tickets()] == [1000]
    env.sink.wait(1)
    settled(env.postfix)
    assert len(env.sink.messages) == 1


def test_sigterm_stops_cleanly_and_removes_the_socket(env):
    assert env.milter.stop() == 0
    assert not env.socket_path.exists()
    assert "stopped" in env.milter.text()
    # With the milter gone Postfix answers 4xx (milter_default_action = tempfail).
    code, _ = env.send(mail("While down"))
    assert 400 <= code < 500


def test_check_passes_against_the_private_postfix(env, capsys):
    from postdesk import check

    assert check.run(env.config, postfix_config=str(env.postfix.etc), dns=False) == 0
    out = capsys.readouterr().out
    assert "problem" not in out and "milter_default_action = tempfail" in out
    env.postfix.postconf(milter_default_action="accept")
    assert check.run(env.config, postfix_config=str(env.postfix.etc), dns=False) == 78
    assert "postconf -e 'milter_default_action = tempfail'" in capsys.readouterr().out
    env.milter.stop()
    env.postfix.postconf(milter_default_action="tempfail")
    assert check.run(env.config, postfix_config=str(env.postfix.etc), dns=False) == 69
    out = capsys.readouterr().out
    assert "does not answer" in out or "no milter socket" in out


def test_discard_drops_the_support_copy_and_keeps_the_others(tmp_path):
    ok, why = available()
    need(ok, why)
    e = milter_desk(tmp_path, {"milter": {"deliver": "discard"}})
    try:
        e.start()
        assert e.send(mail("Only to us"))[0] == 250
        assert e.send(mail("And to the boss"), rcpts=("support@example.com", "boss@example.net"))[0] == 250
        (got,) = e.sink.wait(1)
        assert got.recipients == ["boss@example.net"]
        assert got.header("Subject") == "[#1001] And to the boss"
        assert sorted(t["number"] for t in e.tickets()) == [1000, 1001]
        settled(e.postfix)
        assert len(e.sink.messages) == 1
    finally:
        e.close()


def test_a_second_milter_on_the_same_socket_refuses_to_start(env):
    r = subprocess.run(
        [sys.executable, "-m", "postdesk.milter", "--config", str(env.config_path)],
        capture_output=True, text=True, timeout=30, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert r.returncode == 69, r.stderr
    assert "another milter is already listening" in r.stderr
    assert env.send(mail("Still served"))[0] == 250  # the first one kept its socket


def test_binary_attachment_is_byte_exact_in_the_store_and_in_the_customer_update(env):
    """A staff reply with a binary attachment whose name is not ASCII goes
    through Postfix and the milter into the store, and out again in the
    customer's update through the same Postfix: the same bytes and the same
    name at each step."""
    # Every octet value (NUL, CR, LF, a lone "." line's bytes, invalid UTF-8),
    # then incompressible noise: nothing a text path could keep intact.
    data = bytes(range(256)) * 64 + os.urandom(4096)
    name = "Prüfbericht – 検査 №7.bin"  # RFC 2231 filename*=utf-8''...
    assert env.send(mail("Printer broken", msgid="att-1@example.org"))[0] == 250

    reply = EmailMessage()
    reply["From"] = "Bob Staff <bob@example.com>"
    reply["To"] = "support@example.com"
    reply["Subject"] = "Re: [#1000] Printer broken"
    reply["Message-ID"] = "<att-2@example.com>"
    reply["In-Reply-To"] = "<att-1@example.org>"
    reply.set_content("The test report is attached.\n")
    reply.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    assert env.send(reply.as_bytes(policy=SMTP_POLICY), sender="bob@example.com")[0] == 250

    # In the store: recorded on the ticket, and `postdesk attachment get` gives the bytes back.
    actions = env.store.show_ticket(1000)["actions"]
    assert [a["author"] for a in actions] == ["customer@example.org", "bob@example.com"]
    (meta,) = actions[1]["attachments"]
    assert (meta["filename"], meta["size"], meta["content_type"]) == (name, len(data), "application/octet-stream")
    got = subprocess.run(
        [sys.executable, "-m", "postdesk", "--config", str(env.config_path), "attachment", "get", str(meta["id"]), "-o", "-"],
        capture_output=True, timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == data

    # The milter changed the support copy's headers only.
    env.sink.wait(2)
    (copy,) = [r for r in env.sink.messages if r.header("Message-ID") == "<att-2@example.com>"]
    (part,) = copy.message.iter_attachments()
    assert (part.get_filename(), part.get_payload(decode=True)) == (name, data)

    # One notifier pass with the clock past the quiet period: the customer's
    # update leaves through the same Postfix (and milter) for the sink.
    later = utcnow() + timedelta(seconds=env.config.notifier.quiet_period + 1)
    stats = Worker(env.config, env.store, lambda: later).run_pass()
    assert stats.failed == 0 and stats.deferred == 0, stats

    def update():
        for r in env.sink.messages:
            if r.recipients == ["customer@example.org"] and any(True for _ in r.message.iter_attachments()):
                return r
        return None

    update = wait_for(update, 20, "the customer's update with the attachment")
    msg = update.message
    assert "[#1000]" in str(msg["Subject"])
    assert "The test report is attached." in msg.get_body(("plain",)).get_content()
    (part,) = msg.iter_attachments()
    assert part.get_filename() == name
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_payload(decode=True) == data


def test_reload_switches_the_milter_for_the_very_next_connection(env):
    """``PrivatePostfix.reload()`` returns once new connections get an smtpd
    that read the new main.cf: no settle time, and no mail slips through an
    smtpd from before the reload (one is idle after the first mail)."""
    assert env.send(mail("Before", msgid="before@example.org"))[0] == 250
    assert env.sink.wait(1)[0].header("X-Postdesk-Ticket") == "1000"
    env.postfix.set_milter(None)
    assert env.send(mail("Unfiltered", msgid="off@example.org"))[0] == 250
    assert env.sink.wait(2)[1].header("X-Postdesk-Ticket") is None
    env.postfix.set_milter(f"unix:{env.socket_path}")
    assert env.send(mail("Filtered again", msgid="on@example.org"))[0] == 250
    assert env.sink.wait(3)[2].header("X-Postdesk-Ticket") == "1001"
    assert [t["number"] for t in env.tickets()] == [1000, 1001]
