"""Crashes and restarts under load, on loopback, in bounded loops.

- ``kill -9`` the milter while a private Postfix is sending it mail: Postfix
  answers 4xx (milter_default_action = tempfail) until it is back, every
  message that got a 250 is a ticket, and the 4xx ones sent again land once.
- ``kill -9`` a notifier mid-batch: no notification is lost; the copies sent
  twice are the at-least-once window (between the SMTP send and the batch's
  commit), counted and bounded here, measured by bench/notifier_crash.py.
- restart PostgreSQL (a private cluster, never the machine's) under load:
  4xx while it is down, all accepted mail present afterwards.
"""

from __future__ import annotations

import smtplib
import threading
from collections import Counter

import pytest

from postdesk.notifier.worker import BATCH
from postdesk.testing import pgcluster
from postdesk.testing.crash import notifier_kill_round
from postdesk.testing.desk import Desk
from postdesk.testing.milter import MilterProcess
from postdesk.testing.postfix import available
from postdesk.testing.wait import wait_for
from tests.conftest import SUITE_DNS, need
from tests.postfix_support import lmtp_desk, mail, milter_desk, settled

pytestmark = pytest.mark.postfix

MESSAGES = 40
THREADS = 4


def send_all(env: Desk, subjects: list[str], codes: dict[str, int]) -> None:
    """Send each subject once over THREADS connections; record the final reply code."""
    todo = list(subjects)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                subject = todo.pop(0)
            try:
                with smtplib.SMTP("127.0.0.1", env.postfix.port, timeout=30) as s:
                    s.sendmail("customer@example.org", ["support@example.com"], mail(subject, msgid=f"{subject.replace(' ', '-')}@example.org"))
                codes[subject] = 250
            except smtplib.SMTPResponseException as e:
                codes[subject] = e.smtp_code
            except (smtplib.SMTPException, OSError):
                codes[subject] = 421

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def retry_until_accepted(env: Desk, codes: dict[str, int], rounds: int = 5) -> None:
    """What a sender's MTA does with a 4xx: send again later (bounded)."""
    for _ in range(rounds):
        again = [s for s, c in codes.items() if c != 250]
        if not again:
            return
        assert all(400 <= codes[s] < 500 for s in again), {s: codes[s] for s in again}
        send_all(env, again, codes)


def tickets_by_subject(env: Desk) -> Counter:
    return Counter(t["subject"] for t in env.tickets())


def _env(tmp_path, store_url=None):
    ok, why = available()
    need(ok, why)
    # One sender opens every ticket here: no new-ticket rate limit (a 451 4.7.1 of its own).
    extra: dict = {"limits": {"new_tickets_per_sender": 0}}
    if store_url:
        extra["store"] = {"url": store_url}
    return milter_desk(tmp_path, extra=extra)


def test_milter_kill9_mid_load_loses_nothing_and_records_once(tmp_path):
    env = _env(tmp_path)
    try:
        env.start()
        subjects = [f"Load {i}" for i in range(MESSAGES)]
        codes: dict[str, int] = {}
        sender = threading.Thread(target=send_all, args=(env, subjects, codes))
        sender.start()
        wait_for(lambda: sum(1 for c in codes.values() if c == 250) >= 5, 60, "the first accepted mails")
        env.milter.kill()  # SIGKILL, sessions in flight
        sender.join(180)
        refused = [s for s, c in codes.items() if c != 250]
        assert refused, "the kill came after the last mail: nothing was refused"
        assert all(400 <= codes[s] < 500 for s in refused), codes  # tempfail, never a bounce
        accepted = {s for s, c in codes.items() if c == 250}
        # Every 250 is a ticket already.
        assert accepted <= set(tickets_by_subject(env)), accepted - set(tickets_by_subject(env))
        env.milter = MilterProcess(env.config_path, env.socket_path, tmp_path / "milter2.log").start()
        retry_until_accepted(env, codes)
        assert set(codes.values()) == {250}
        assert tickets_by_subject(env) == Counter(subjects)  # each exactly once
    finally:
        env.close()


def test_notifier_kill9_mid_batch_loses_no_notification(tmp_path):
    r = notifier_kill_round(tmp_path / "round", SUITE_DNS.address, tickets=20, kill_after=5)
    assert r.expected == 40  # an acknowledgement and a team alert per ticket
    assert r.lost == 0, r
    # The window: what the killed worker sent since its batch's last commit;
    # never more than one batch, never more than had arrived before the kill.
    assert r.duplicates <= min(r.before_kill, BATCH), r


def test_postgresql_restart_under_load(tmp_path):
    ok, why = pgcluster.available()
    need(ok, why)
    pg = pgcluster.PrivatePostgres().start()
    env = None
    try:
        env = _env(tmp_path, store_url=pg.url)
        env.start()
        subjects = [f"PG {i}" for i in range(MESSAGES)]
        codes: dict[str, int] = {}
        send_all(env, subjects[:10], codes)
        assert set(codes.values()) == {250}
        pg.stop()
        send_all(env, subjects[10:20], codes)
        # Down: Postfix answered each with the milter's 451, nothing accepted unrecorded.
        assert [codes[s] for s in subjects[10:20]] == [451] * 10, codes
        pg.start()
        send_all(env, subjects[20:], codes)
        retry_until_accepted(env, codes)
        assert set(codes.values()) == {250}
        assert tickets_by_subject(env) == Counter(subjects)
    finally:
        if env is not None:
            env.close()
        pg.close()


def test_postgresql_restart_under_lmtp_load(tmp_path):
    """The same restart behind postdesk lmtp: each recipient gets 451 4.3.0
    while the database is down, Postfix keeps the mail, and it lands once."""
    import re


    ok, why = available()
    need(ok, why)
    ok, why = pgcluster.available()
    need(ok, why)
    pg = pgcluster.PrivatePostgres().start()
    env = None
    try:
        env = lmtp_desk(tmp_path, store_url=pg.url, extra={"limits": {"new_tickets_per_sender": 0}}).start()
        subjects = [f"LMTP PG {i}" for i in range(30)]
        for s in subjects[:10]:
            env.send(mail(s))
        settled(env.postfix)
        pg.stop()
        for s in subjects[10:20]:
            env.send(mail(s))  # Postfix takes it: the queue is the buffer
        wait_for(lambda: len(re.findall(r"status=deferred \(host .*lmtp\.sock.* said: 451 4\.3\.0 ", env.postfix.log())) >= 10, 60, "451 4.3.0 for each message")
        pg.start()
        for s in subjects[20:]:
            env.send(mail(s))
        env.postfix.flush()
        wait_for(env.postfix.queue_empty, 60, "Postfix's queue to empty")
        assert Counter(t["subject"] for t in env.tickets()) == Counter(subjects)
    finally:
        if env is not None:
            env.close()
        pg.close()
