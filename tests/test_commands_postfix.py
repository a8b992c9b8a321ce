"""Every staff mail command through a real, private Postfix and the milter.

One Postfix, milter and sink for the module (starting them is the slow
part); each test opens its own tickets.  Staff write from loopback, which
the test config trusts (tests/conftest.py), so bob@example.com is verified
staff; customers are at example.org.  Where a command makes mail (an
acknowledgement, a refusal), one notifier pass submits it through the same
Postfix to the sink, and the test reads it there.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from postfix_support import mail, milter_desk, settled

from postdesk.clock import utcnow
from postdesk.notifier.worker import Worker
from postdesk.testing.postfix import available
from postdesk.testing.wait import wait_for
from tests.conftest import need

pytestmark = pytest.mark.postfix

STAFF = "bob@example.com"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ok, why = available()
    need(ok, why)
    e = milter_desk(tmp_path_factory.mktemp("commands"))
    try:
        e.start()
        yield e
    finally:
        e.close()


def customer_ticket(env, subject: str = "Printer broken", customer: str = "customer@example.org") -> int:
    before = {t["number"] for t in env.tickets()}
    assert env.send(mail(subject, sender=customer), sender=customer)[0] == 250
    (number,) = {t["number"] for t in env.tickets()} - before
    return number


def staff(env, subject: str, body: str = "Done.\r\n", rcpts=("support@example.com",)) -> str:
    """Staff mail to the desk; returns its Message-ID."""
    msgid = f"{uuid.uuid4().hex}@example.com"
    raw = mail(subject, msgid=msgid, sender=STAFF, body=body)
    assert env.send(raw, rcpts=rcpts, sender=STAFF)[0] == 250
    return msgid


def notify(env) -> None:
    """One notifier pass with the clock past every quiet period."""
    later = utcnow() + timedelta(seconds=env.config.notifier.quiet_period + 5)
    stats = Worker(env.config, env.store, lambda: later).run_pass()
    assert stats.failed == 0, stats
    settled(env.postfix)


def mail_to(env, address: str, subject_part: str):
    def find():
        return next((r for r in env.sink.messages if r.recipients == [address] and subject_part in str(r.message["Subject"])), None)

    return wait_for(find, 20, f"mail to {address} about {subject_part!r}")


def test_open(env):
    n = customer_ticket(env)
    staff(env, f"Re: [#{n}] Printer broken [closed]")
    assert env.store.show_ticket(n)["status"] == "closed"
    staff(env, f"Re: [#{n}] Printer broken", "Not fixed after all.\r\n[open]\r\n")
    t = env.store.show_ticket(n)
    assert t["status"] == "open" and t["closed_at"] is None


def test_pending_and_the_customer_reply_sets_it_open(env):
    n = customer_ticket(env)
    staff(env, f"Re: [#{n}] Printer broken [pending]", "Which model is it?\r\n")
    assert env.store.show_ticket(n)["status"] == "pending"
    assert env.send(mail(f"Re: [#{n}] Printer broken", body="An HP 4050.\r\n"))[0] == 250
    assert env.store.show_ticket(n)["status"] == "open"


def test_take(env):
    n = customer_ticket(env)
    assert env.store.show_ticket(n)["owner"] is None
    staff(env, f"Re: [#{n}] Printer broken", "[take]\r\nI'll look at it.\r\n")
    assert env.store.show_ticket(n)["owner"] == STAFF


def test_assign_and_a_refused_assign(env):
    n = customer_ticket(env, "Assign me")
    staff(env, f"Re: [#{n}] Assign me", "[assign alice@example.com]\r\n")
    assert env.store.show_ticket(n)["owner"] == "alice@example.com"
    refused = staff(env, f"Re: [#{n}] Assign me", "[assign mallory@evil.example]\r\n")
    assert env.store.show_ticket(n)["owner"] == "alice@example.com"
    notify(env)
    refusal = mail_to(env, STAFF, f"Not done: [#{n}]")
    assert "mallory@evil.example is not a staff address" in refusal.message.get_body(("plain",)).get_content()
    assert refusal.message["Auto-Submitted"] == "auto-replied"
    # It answers the refused mail (RFC 3834 section 3.1.5): threaded under it.
    assert refusal.message["In-Reply-To"] == refusal.message["References"] == f"<{refused}>"


def test_merge(env):
    m = customer_ticket(env, "Duplicate one", customer="dora@example.org")
    n = customer_ticket(env, "The real one", customer="dora@example.org")
    staff(env, f"Re: [#{m}] Duplicate one [merge #{n}]", "Same problem as the other one.\r\n")
    tm = env.store.show_ticket(m)
    assert (tm["status"], tm["merged_into"]) == ("closed", n)
    # Later mail with M's tag lands on N.
    assert env.send(mail(f"Re: [#{m}] Duplicate one", sender="dora@example.org", body="Any news?\r\n"), sender="dora@example.org")[0] == 250
    texts = [a["text"] for a in env.store.show_ticket(n)["actions"]]
    assert any("Any news?" in t for t in texts) and any("Same problem" in t for t in texts)
    # A merge back (a cycle) is refused, by mail.
    staff(env, f"Re: [#{n}] The real one [merge #{m}]")
    assert env.store.show_ticket(n)["merged_into"] is None
    notify(env)
    assert "[merge" in mail_to(env, STAFF, f"Not done: [#{n}]").message.get_body(("plain",)).get_content()


def test_fwd(env):
    before = {t["number"] for t in env.tickets()}
    body = (
        "She asked me directly, please handle.\r\n\r\n"
        "---------- Forwarded message ---------\r\n"
        "From: Erika Mustermann <erika@example.org>\r\n"
        "Date: Fri, 27 Nov 2026 at 10:00\r\n"
        "Subject: Lost password\r\n"
        "To: Bob <bob@example.com>\r\n\r\n"
        "I lost my password.\r\n"
    )
    staff(env, "Fwd: [fwd] Lost password", body)
    (n,) = {t["number"] for t in env.tickets()} - before
    t = env.store.show_ticket(n)
    assert (t["requester"], t["subject"]) == ("erika@example.org", "Lost password")
    assert [(a["author"], a["public"]) for a in t["actions"]] == [("erika@example.org", True), (STAFF, False)]
    notify(env)
    ack = mail_to(env, "erika@example.org", f"[#{n}]")
    assert "we have received your message" in ack.message.get_body(("plain",)).get_content()
    assert not [r for r in env.sink.messages if r.recipients == [STAFF] and f"[#{n}]" in str(r.message["Subject"])]


def test_unknown_command_gets_one_refusal(env):
    n = customer_ticket(env, "Unknown")
    staff(env, f"Re: [#{n}] Unknown", "[frobnicate]\r\n[closd]\r\nWe are on it.\r\n")
    t = env.store.show_ticket(n)
    assert t["status"] == "open" and any("We are on it." in a["text"] for a in t["actions"])
    notify(env)
    refusal = mail_to(env, STAFF, f"Not done: [#{n}]")
    text = refusal.message.get_body(("plain",)).get_content()
    assert "[frobnicate]: unknown command" in text and "[closd]: unknown command" in text
    assert len([r for r in env.sink.messages if r.recipients == [STAFF] and f"Not done: [#{n}]" in str(r.message["Subject"])]) == 1
    # A customer's bracketed words are nobody's business: no refusal to them.
    assert env.send(mail(f"Re: [#{n}] Unknown", body="[frobnicate]\r\n"))[0] == 250
    notify(env)
    assert not [r for r in env.sink.messages if "Not done" in str(r.message["Subject"]) and r.recipients != [STAFF]]
