"""Killing a notifier mid-batch, for tests/test_crash.py and bench/notifier_crash.py.

``notifier_kill_round`` fills a store with new tickets (each queues an
acknowledgement and a team alert), runs ``postdesk notifier`` as a child
process against a slow sink, ``kill -9``s it once ``kill_after`` mails have
reached the sink, starts a new one and waits until every outbox row is
sent.  It counts, per mail (recipient and subject), how often it arrived:
none missing is "no notification lost"; the extra copies are the
duplicate window.  The window: a mail is sent over SMTP, then its row is
marked sent when its batch is recorded (``postdesk.notifier.worker``), so a
worker killed in between leaves rows that a later worker sends again once
their lease ([notifier] lease) runs out: at-least-once delivery.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from postdesk.testing.process import ServiceProcess
from postdesk.testing.smtp import Sink
from postdesk.testing.toml import toml_dumps
from postdesk.testing.wait import wait_for


@dataclass
class KillRound:
    expected: int  # mails the outbox held
    arrived: int  # mails at the sink, copies included
    unique: int  # distinct mails at the sink
    before_kill: int  # mails at the sink when the worker was killed
    seconds: float  # from the kill until every row was sent

    @property
    def lost(self) -> int:
        return self.expected - self.unique

    @property
    def duplicates(self) -> int:
        return self.arrived - self.unique


def base_config(workdir: Path, sink_port: int, dns: str, store_url: str | None = None) -> dict:
    return {
        "organization": {
            "name": "Example Inc",
            "system_addresses": ["support@example.com"],
            "reply_to": "support@example.com",
            "team": ["team@example.com"],
            "staff": ["@example.com"],
        },
        "store": {"url": store_url or f"sqlite:///{workdir}/postdesk.db", "attachments": str(workdir / "attachments")},
        "notifier": {"smtp": f"127.0.0.1:{sink_port}", "tick": 0.1, "lease": 1.0, "ack_global_limit": 100000, "ack_limit": 1000},
        "trust": {"ack_unauthenticated": True},
        "dns": {"nameservers": [dns], "timeout": 1},
        "log": {"level": "INFO", "target": "stderr"},
    }


def fill(config, tickets: int) -> int:
    """``tickets`` new tickets from distinct customers; returns the outbox rows queued."""
    from email.message import EmailMessage

    from postdesk.filter.decision import Envelope
    from postdesk.ingest import ingest
    from postdesk.store import Store
    from postdesk.store.models import Outbox

    store = Store.from_config(config)
    store.init(config.organization.first_ticket_number)
    try:
        for i in range(tickets):
            m = EmailMessage()
            m["From"] = f"c{i}@customer.example"
            m["To"] = "support@example.com"
            m["Subject"] = f"Question {i}"
            m["Message-ID"] = f"<q{i}@customer.example>"
            m.set_content(f"Question number {i}.\n")
            ingest(m.as_bytes(), Envelope(sender=f"c{i}@customer.example", recipients=("support@example.com",)), store, config)
        with store.session() as s:
            return s.query(Outbox).count()
    finally:
        store.close()


def count(config, *states: str) -> int:
    from postdesk.store import Store
    from postdesk.store.models import Outbox

    store = Store.from_config(config)
    try:
        with store.session() as s:
            return s.query(Outbox).filter(Outbox.state.in_(states)).count()
    finally:
        store.close()


def start_notifier(config_path: Path, log: Path) -> subprocess.Popen:
    return ServiceProcess(config_path, log).spawn("postdesk", "notifier")


def notifier_kill_round(workdir: Path, dns: str, tickets: int = 30, kill_after: int = 10, delay: float = 0.02, store_url: str | None = None, timeout: float = 60.0) -> KillRound:
    from postdesk import config as configmod

    workdir.mkdir(parents=True, exist_ok=True)
    sink = Sink(delay=delay).start()
    procs: list[subprocess.Popen] = []
    try:
        path = workdir / "postdesk.toml"
        path.write_text(toml_dumps(base_config(workdir, sink.port, dns, store_url)))
        config = configmod.load(path)
        fill(config, tickets)
        procs.append(start_notifier(path, workdir / "notifier.log"))
        wait_for(lambda: len(sink.messages) >= kill_after, timeout, f"{kill_after} notifications at the sink")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        killed_at = time.monotonic()
        before = len(sink.messages)
        procs.append(start_notifier(path, workdir / "notifier.log"))
        wait_for(lambda: count(config, "queued", "sending") == 0, timeout, "every outbox row sent")
        seconds = time.monotonic() - killed_at
        expected = count(config, "sent")
        counts = Counter((tuple(m.recipients), m.header("Subject")) for m in sink.messages)
        return KillRound(expected, sum(counts.values()), len(counts), before, seconds)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        sink.stop()
