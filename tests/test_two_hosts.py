"""Two MX hosts on one PostgreSQL: two private Postfix instances, two milters,
two notifiers (``postdesk.testing.hosts``), attachments in the database.

Mail arrives interleaved on both hosts: new tickets, then for every ticket a
customer reply with an attachment on one host and a staff reply with an
attachment on the other, at the same time.  Shown: ticket numbers are
distinct and contiguous, each message is recorded once, every attachment
is sent on by one notifier or the other with its bytes unchanged, and no
notification is sent twice.  Needs root, Postfix and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import pytest
from conftest import BASE_CONFIG, need
from sqlalchemy import func, select

from postdesk import config as configmod
from postdesk.store import Store
from postdesk.store.models import Action, BlobRow, Outbox
from postdesk.testing.hosts import Hosts
from postdesk.testing.postfix import available
from postdesk.testing.wait import wait_for

pytestmark = pytest.mark.postfix

TICKETS = 8


def mail(sender: str, subject: str, body: str, attachment: tuple[str, bytes] | None = None, cc: str = "") -> tuple[str, bytes]:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "support@example.com"
    if cc:
        m["Cc"] = cc
    m["Subject"] = subject
    msgid = f"{uuid.uuid4().hex}@{sender.rpartition('@')[2].rstrip('>')}"
    m["Message-ID"] = f"<{msgid}>"
    m["Date"] = "Thu, 03 Dec 2026 05:00:00 +0000"
    m.set_content(body)
    if attachment:
        m.add_attachment(attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0])
    return msgid, m.as_bytes()


def ours(r) -> bool:
    """A mail a notifier sent (not a support-address copy the milter passed on)."""
    return r.header("X-Postdesk-Loop") is not None and (r.header("Auto-Submitted") or "").startswith("auto-")


@pytest.fixture
def hosts(tmp_path, pg_url):
    ok, why = available()
    need(ok, why)
    shared = {section: dict(values) for section, values in BASE_CONFIG.items()}
    shared["notifier"] = {"quiet_period": 1, "max_wait": 5, "tick": 0.2, "ack_limit": 100, "ack_global_limit": 1000}
    h = Hosts(tmp_path, pg_url, shared, count=2)
    h.start()
    yield h
    h.stop()


def test_two_hosts_share_one_desk(hosts, tmp_path):
    config = configmod.load(hosts[0].config_path)
    store = Store.from_config(config)
    assert store.blobs.name == "database"
    sent_ids: list[str] = []
    attachments: dict[str, bytes] = {}  # filename -> bytes that must come out again

    def send(host: int, sender: str, msg: tuple[str, bytes]) -> None:
        msgid, raw = msg
        code, text = hosts[host].send(raw, sender=sender)
        assert code == 250, (host, code, text)
        sent_ids.append(msgid)

    try:
        # New tickets, interleaved on both hosts at once.
        customers = [f"customer{i}@example.org" for i in range(TICKETS)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: send(i % 2, customers[i], mail(customers[i], f"Problem {i}", f"Help with {i}.", cc=f"colleague{i}@example.org")), range(TICKETS)))
        wait_for(lambda: len(store.list_tickets()) >= TICKETS, 60, "the tickets from both hosts")
        by_subject = {t["subject"]: t["number"] for t in store.list_tickets()}
        numbers = sorted(by_subject.values())
        assert numbers == list(range(1000, 1000 + TICKETS))  # distinct and contiguous

        # Follow-ups of one ticket on different hosts, at the same time: the
        # customer on one, staff on the other, each with an attachment.
        jobs = []
        for i in range(TICKETS):
            n = by_subject[f"Problem {i}"]
            mine = (f"log-{i}.bin", os.urandom(300_000 + i))  # two chunks
            theirs = (f"fix-{i}.bin", os.urandom(50_000 + i))
            attachments.update([mine, theirs])
            jobs.append((i % 2, customers[i], mail(customers[i], f"Re: [#{n}] Problem {i}", "Logs attached.", mine)))
            jobs.append(((i + 1) % 2, "staff@example.com", mail("Staff <staff@example.com>", f"Re: [#{n}] Problem {i}", "Try this.", theirs)))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda job: send(*job), jobs))

        def settled() -> bool:
            with store.session(read_only=True) as s:
                actions = s.scalar(select(func.count()).select_from(Action).where(Action.kind == "message"))
                pending = s.scalar(select(func.count()).select_from(Outbox).where(Outbox.state.in_(("queued", "sending"))))
                sent = s.scalar(select(func.count()).select_from(Outbox).where(Outbox.state == "sent"))
            return actions == 3 * TICKETS and pending == 0 and hosts.queues_empty() and len([r for r in hosts.sink.messages if ours(r)]) >= sent

        wait_for(settled, 120, "every message recorded and every notification delivered")

        # Each message recorded once, on its ticket.
        with store.session(read_only=True) as s:
            recorded = [a.message_id for a in s.scalars(select(Action).where(Action.kind == "message"))]
            rows = list(s.scalars(select(Outbox)))
            blob_count = s.scalar(select(func.count()).select_from(BlobRow))
        assert sorted(recorded) == sorted(sent_ids)
        for i in range(TICKETS):
            t = store.show_ticket(by_subject[f"Problem {i}"])
            assert len([a for a in t["actions"] if a["kind"] == "message"]) == 3
        assert blob_count == len(attachments)  # the bytes are in the database, once each

        # No notification sent twice: each sent row's Message-ID reached the
        # sink exactly once, and nothing else did.
        out = [r for r in hosts.sink.messages if ours(r)]
        got_ids = [r.header("Message-ID").strip("<>") for r in out]
        assert all(o.state == "sent" for o in rows), [(o.kind, o.recipient, o.state, o.last_error) for o in rows if o.state != "sent"]
        assert sorted(got_ids) == sorted(o.message_id for o in rows)
        assert len(set(got_ids)) == len(got_ids)
        kinds = {(o.kind, o.recipient, o.ticket_id, o.up_to_action_id) for o in rows}
        assert len(kinds) == len(rows)

        # Every attachment sent on by one notifier or the other, byte for byte.
        seen: dict[str, set[str]] = {}
        for r in out:
            for part in r.message.iter_attachments():
                seen.setdefault(part.get_filename(), set()).add(hashlib.sha256(part.get_content()).hexdigest())
        for name, data in attachments.items():
            assert seen.get(name) == {hashlib.sha256(data).hexdigest()}, name

        # Both notifiers ran against the one outbox; say who sent what.
        logs = [h.notifier.text() for h in hosts if h.notifier is not None]
        per_host = [len(re.findall(r"status=sent", text)) for text in logs]
        assert sum(per_host) == len(rows), per_host
        print(f"notifications sent per host: {per_host}")
    finally:
        store.close()
