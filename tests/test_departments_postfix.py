"""Departments, owners and bounce alerts through a real, private Postfix.

Customers' mail goes through Postfix and the milter to each department's
address; the notifier sends the acknowledgements and alerts back through the
same Postfix, and the sink shows what each department's mail looks like.
The bounce test lets Postfix itself write the delivery report (error(8) for
the customer's address), then hands that report to the desk as a mail
system would.  Needs root and the Debian postfix package.
"""

from __future__ import annotations

import shutil
import smtplib
import uuid

import pytest
from conftest import need

from postdesk.notifier.worker import Worker
from postdesk.store import Store
from postdesk.testing.milter import MilterProcess
from postdesk.testing.postfix import PrivatePostfix, available, shared_tmpdir
from postdesk.testing.smtp import Sink
from postdesk.testing.toml import toml_dumps
from postdesk.testing.wait import free_port, wait_for

pytestmark = pytest.mark.postfix

DEPARTMENTS = [
    {
        "name": "Billing",
        "display_name": "Example Billing",
        "addresses": ["billing@example.com"],
        "team": ["billing-team@example.com"],
        "reply_to": "billing@example.com",
    },
    {
        "name": "Sales",
        "addresses": ["sales@example.com"],
        "team": ["sales-team@example.com"],
        "reply_to": "sales@example.com",
    },
]


def mail(sender: str, to: str, subject: str, body: str = "Hello.\r\n", extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@customer.org>\r\n"
        f"Date: Fri, 27 Nov 2026 23:00:00 +0000\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


@pytest.fixture
def site(make_config, tmp_path):
    """(config, store, postfix, sink, send) with the milter on; ``extra``: main.cf settings."""
    ok, why = available()
    need(ok, why)
    made: list = []

    def make(extra: dict | None = None, **sections):
        sockdir = shared_tmpdir("postdesk-departments-")
        sock = sockdir / "milter.sock"
        sink = Sink().start()
        pf = PrivatePostfix(tmp_path, free_port(), sink.port, milter_socket=f"unix:{sock}", extra=extra)
        cfg = make_config(
            notifier={"smtp": f"127.0.0.1:{pf.port}"},
            milter={"socket": f"unix:{sock}", "socket_group": "postfix", "socket_mode": "0660"},
            departments=DEPARTMENTS,
            **sections,
        )
        conf = tmp_path / "postdesk.toml"
        conf.write_text(toml_dumps(cfg.as_dict()))
        store = Store.from_config(cfg)
        store.init(1000)
        milter = MilterProcess(conf, sock, tmp_path / "milter.log")
        made.append((pf, milter, sink, store, sockdir))
        milter.start()
        pf.start()

        def send(sender: str, recipients: list[str], data: bytes) -> None:
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
                s.sendmail(sender, recipients, data)

        return cfg, store, pf, sink, send

    yield make
    for pf, milter, sink, store, sockdir in made:
        pf.stop()
        milter.kill()
        sink.stop()
        store.close()
        shutil.rmtree(sockdir, ignore_errors=True)


def test_each_department_route_through_postfix(site):
    cfg, store, pf, sink, send = site()
    send("ann@customer.org", ["billing@example.com"], mail("Ann <ann@customer.org>", "billing@example.com", "Invoice wrong"))
    send("ben@customer.org", ["support@example.com"], mail("Ben <ben@customer.org>", "support@example.com", "Printer broken"))
    send("cid@customer.org", ["sales@example.com"], mail("Cid <cid@customer.org>", "sales@example.com", "Quote please"))
    # To two departments (and the default): ONE ticket; the first department in the file wins.
    both = mail("Dee <dee@customer.org>", "support@example.com, sales@example.com, billing@example.com", "Refund and upgrade")
    send("dee@customer.org", ["support@example.com", "sales@example.com", "billing@example.com"], both)
    wait_for(lambda: len(store.list_tickets()) >= 4, 30, "four tickets")
    tickets = {t["subject"]: t for t in store.list_tickets()}
    assert len(tickets) == 4
    assert {s: t["department"] for s, t in tickets.items()} == {
        "Invoice wrong": "Billing",
        "Printer broken": None,
        "Quote please": "Sales",
        "Refund and upgrade": "Billing",
    }
    wait_for(lambda: len(sink.messages) >= 4, 30, "the support copies")
    sink.clear()

    assert Worker(cfg, store).run_pass().sent == 8  # an ack and an alert per ticket
    sink.wait(8, 30)
    got = {tuple(r.recipients): r for r in sink.messages}
    expected = {
        "ann@customer.org": ("Example Billing <billing@example.com>", "billing-team@example.com"),
        "ben@customer.org": ("Example Inc <support@example.com>", "team@example.com"),
        "cid@customer.org": ("Example Inc <sales@example.com>", "sales-team@example.com"),
        "dee@customer.org": ("Example Billing <billing@example.com>", "billing-team@example.com"),
    }
    for customer, (sender, team) in expected.items():
        ack = got[(customer,)]
        m = ack.message
        assert (m["From"], m["Reply-To"], m["Auto-Submitted"]) == (sender, sender, "auto-replied"), customer
        assert ack.sender == sender.split("<")[1].rstrip(">")
        # The same ticket's alert went to that department's team.
        (alert,) = [r for r in sink.messages if r.recipients == [team] and r.message["X-Postdesk-Ticket"] == m["X-Postdesk-Ticket"]]
        assert alert.message["From"] == sender
    alerts = [r for r in sink.messages if r.recipients[0].endswith("@example.com")]
    assert sorted(r.recipients[0] for r in alerts) == ["billing-team@example.com"] * 2 + ["sales-team@example.com", "team@example.com"]
    for r in alerts:
        dept_sender = {"billing-team@example.com": "billing@example.com", "sales-team@example.com": "sales@example.com"}.get(
            r.recipients[0], "support@example.com"
        )
        assert r.message["Reply-To"].endswith(f"<{dept_sender}>") and r.message["Auto-Submitted"] == "auto-generated"
    # Our own mails through the same Postfix and milter became no tickets.
    assert len(store.list_tickets()) == 4

    # Staff answer from a trusted host: the first public reply takes the ticket;
    # the customer's next reply alerts the owner, not Billing's team.
    n = tickets["Invoice wrong"]["number"]
    send("bob@example.com", ["billing@example.com"], mail("Bob <bob@example.com>", "billing@example.com", f"Re: [#{n}] Invoice wrong", "Fixed.\r\n"))
    wait_for(lambda: (store.show_ticket(n) or {}).get("owner") == "bob@example.com", 30, "bob owning the ticket")
    send("ann@customer.org", ["billing@example.com"], mail("Ann <ann@customer.org>", "billing@example.com", f"Re: [#{n}] Invoice wrong", "Thanks, and?\r\n"))
    wait_for(lambda: len(store.show_ticket(n)["actions"]) >= 3, 30, "the customer's reply")
    sink.clear()
    Worker(cfg, store).run_pass()
    wait_for(lambda: any(r.recipients == ["bob@example.com"] for r in sink.messages), 30, "the owner's alert")
    assert not any(r.recipients == ["billing-team@example.com"] for r in sink.messages)


def test_a_real_postfix_dsn_of_our_ack_alerts_the_team(site):
    # error(8) refuses the customer's address for good: Postfix writes the DSN to our sender.
    refuse = "inline:{ {gone@customer.org = error:5.1.1 mailbox gone} }"
    cfg, store, pf, sink, send = site(extra={"transport_maps": refuse, "smtpd_reject_unlisted_recipient": "no"})
    send("gone@customer.org", ["billing@example.com"], mail("Gone <gone@customer.org>", "billing@example.com", "Invoice wrong"))
    wait_for(lambda: store.list_tickets(), 30, "the ticket")
    n = store.list_tickets()[0]["number"]
    sink.wait(1, 30)
    sink.clear()
    assert Worker(cfg, store).run_pass().sent == 2  # accepted by Postfix; the ack then bounces
    wait_for(lambda: any(r.sender in ("", "<>") and r.recipients == ["billing@example.com"] for r in sink.messages), 30, "Postfix's DSN")
    (dsn,) = [r for r in sink.messages if r.sender in ("", "<>") and r.recipients == ["billing@example.com"]]
    assert b"multipart/report" in dsn.data and b"5.1.1" in dsn.data

    # The report comes back to the department's address, as it would from the customer's MX.
    send("", ["billing@example.com"], dsn.data)
    wait_for(lambda: len(store.show_ticket(n)["actions"]) >= 2, 30, "the bounce on the ticket")
    bounced = store.show_ticket(n)["actions"][-1]
    assert (bounced["public"], "bounce" in bounced["flags"]) == (False, True)
    assert "gone@customer.org" in bounced["new_text"] and "5.1.1" in bounced["new_text"]
    assert Worker(cfg, store).run_pass().sent == 1  # ONE alert, to Billing's team

    def alerts():
        # Not the DSN's own tagged copy, which reaches the sink as all support mail does.
        return [r for r in sink.messages if r.recipients[0].endswith("-team@example.com") and b"could not be delivered" in r.data]

    wait_for(alerts, 30, "the bounce alert")
    (alert,) = alerts()
    assert alert.recipients == ["billing-team@example.com"]
    text = alert.message.get_body(("plain",)).get_content()
    assert f"[#{n}]" in alert.message["Subject"]
    assert "gone@customer.org" in text and "Status: 5.1.1" in text and "mailbox gone" in text
