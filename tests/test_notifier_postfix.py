"""The notifier through a real, private Postfix (and, end to end, the milter).

Postfix offers PIPELINING and CHUNKING, so these tests run the pipelined BDAT
submission path that the aiosmtpd sink of test_notifier.py does not offer:
replies are matched to the right mails even when some are refused, and the
queue id we log is the one Postfix logs.  End to end: a customer's mail
becomes a ticket in the milter, the acknowledgement goes out through the same
Postfix with ``[#N]``, and a reply that keeps only In-Reply-To (tag deleted)
lands on the same ticket.  Needs root and the Debian postfix package.
"""

from __future__ import annotations

import re
import shutil
import smtplib
import uuid

import pytest
from conftest import need
from sqlalchemy import select
from test_store_support import T0, new, record

from postdesk.notifier.smtp import Submitter
from postdesk.notifier.worker import Worker
from postdesk.store import Store
from postdesk.store.models import Outbox
from postdesk.testing.milter import MilterProcess
from postdesk.testing.postfix import PrivatePostfix, available, shared_tmpdir
from postdesk.testing.smtp import Sink
from postdesk.testing.toml import toml_dumps
from postdesk.testing.wait import free_port, wait_for

pytestmark = pytest.mark.postfix

# Postfix access(5) actions for two recipients: one refused for good, one for now.
REFUSALS = "inline:{ {refused@customer.org = 550 5.1.1 no such user}, {later@customer.org = 450 4.2.0 try again later} }"


@pytest.fixture
def postfix_sink(tmp_path):
    ok, why = available()
    need(ok, why)
    sink = Sink().start()
    pf = PrivatePostfix(
        tmp_path,
        free_port(),
        sink.port,
        extra={"smtpd_recipient_restrictions": f"check_recipient_access {REFUSALS}, permit_mynetworks, reject"},
    )
    try:
        pf.start()
        yield pf, sink
    finally:
        pf.stop()
        sink.stop()


class Recording(Submitter):
    instances: list[Recording] = []

    def _connect(self):
        smtp = super()._connect()
        Recording.instances.append(self)
        return smtp


def test_pipelined_submission_through_postfix(make_config, postfix_sink, tmp_path):
    pf, sink = postfix_sink
    cfg = make_config(notifier={"smtp": f"127.0.0.1:{pf.port}"})
    store = Store.from_config(cfg)
    store.init(1000)
    try:
        authors = ["alice@customer.org", "refused@customer.org", "later@customer.org", "bob@customer.org"]
        for a in authors:
            record(store, new(author=a, subject=f"From {a.split('@')[0]}"), cfg, now=T0)
        Recording.instances = []
        worker = Worker(cfg, store, lambda: T0, submitter_factory=lambda: Recording.from_config(cfg))
        stats = worker.run_pass()
        assert Recording.instances and Recording.instances[0]._pipelining  # the BDAT path ran
        assert (stats.sent, stats.failed, stats.deferred) == (6, 1, 1)
        with store.session(read_only=True) as s:
            rows = {(o.kind, o.recipient): o for o in s.scalars(select(Outbox))}
        assert rows[("ack", "refused@customer.org")].state == "failed"
        assert rows[("ack", "refused@customer.org")].last_error.startswith("550 5.1.1")
        assert rows[("ack", "later@customer.org")].state == "queued"
        assert rows[("ack", "later@customer.org")].last_error.startswith("450 4.2.0")
        got = sink.wait(6, 20)
        # Each mail reached the recipient it was meant for: no reply was
        # matched to the wrong mail after the refusals in the same pipeline.
        for r in got:
            (to,) = r.recipients
            m = r.message
            ticket = int(m["X-Postdesk-Ticket"])
            if to == "team@example.com":
                assert m["Auto-Submitted"] == "auto-generated"
            else:
                assert m["Auto-Submitted"] == "auto-replied"
                assert m["Subject"] == f"[#{ticket}] From {to.split('@')[0]}"
        assert sorted(r.recipients[0] for r in got) == ["alice@customer.org", "bob@customer.org"] + ["team@example.com"] * 4
        # The queue id we recorded (and log) is the one Postfix logs for that mail.
        log = pf.log()
        for o in rows.values():
            if o.state == "sent":
                assert re.search(rf"{o.queue_id}: to=<{re.escape(o.recipient)}>.*status=sent", log), o.queue_id
    finally:
        store.close()


# --- end to end with the milter ---------------------------------------------------


def customer_mail(subject: str, msgid: str, extra: str = "", body: str = "The printer is on fire.\r\n") -> bytes:
    return (
        f"From: Customer <customer@example.org>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{msgid}>\r\nDate: Fri, 27 Nov 2026 23:00:00 +0000\r\n{extra}"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def test_end_to_end_ack_and_reply_by_in_reply_to_only(make_config, tmp_path):
    ok, why = available()
    need(ok, why)
    sockdir = shared_tmpdir("postdesk-notifier-e2e-")
    sock = sockdir / "milter.sock"
    sink = Sink().start()
    pf = PrivatePostfix(tmp_path, free_port(), sink.port, milter_socket=f"unix:{sock}")
    cfg = make_config(
        notifier={"smtp": f"127.0.0.1:{pf.port}"},
        milter={"socket": f"unix:{sock}", "socket_group": "postfix", "socket_mode": "0660"},
    )
    conf = tmp_path / "postdesk.toml"
    conf.write_text(toml_dumps(cfg.as_dict()))
    store = Store.from_config(cfg)
    store.init(1000)
    milter = MilterProcess(conf, sock, tmp_path / "milter.log")
    try:
        milter.start()
        pf.start()
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
            s.sendmail("customer@example.org", ["support@example.com"], customer_mail("Printer broken", f"{uuid.uuid4().hex}@example.org"))
        wait_for(lambda: store.list_tickets(), 20, "the ticket")
        sink.wait(1, 20)  # the tagged support copy

        assert Worker(cfg, store).run_pass().sent == 2  # ack + alert, through the same Postfix and milter
        wait_for(lambda: any(r.recipients == ["customer@example.org"] for r in sink.messages), 20, "the acknowledgement")
        (ack,) = [r for r in sink.messages if r.recipients == ["customer@example.org"]]
        m = ack.message
        assert m["Subject"] == "[#1000] Printer broken"
        assert m["Auto-Submitted"] == "auto-replied"
        # Our own mails did not become tickets.
        assert [t["number"] for t in store.list_tickets()] == [1000]

        # The customer replies, deleting the tag; only In-Reply-To is left.
        reply = customer_mail(
            "Re: Printer broken",
            f"{uuid.uuid4().hex}@example.org",
            extra=f"In-Reply-To: {m['Message-ID']}\r\nReferences: {m['Message-ID']}\r\n",
            body="It is still broken.\r\n",
        )
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
            s.sendmail("customer@example.org", ["support@example.com"], reply)
        wait_for(lambda: len((store.show_ticket(1000) or {}).get("actions", [])) >= 2, 20, "the reply on ticket 1000")
        assert [t["number"] for t in store.list_tickets()] == [1000]
        actions = store.show_ticket(1000)["actions"]
        assert "It is still broken." in actions[1]["text"]
        assert actions[1]["public"] is True
    finally:
        pf.stop()
        milter.kill()  # SIGKILL: libmilter is slow to honour SIGTERM; not under test here
        sink.stop()
        store.close()
        shutil.rmtree(sockdir, ignore_errors=True)
