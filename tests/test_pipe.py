"""``postdesk filter`` as Postfix pipe(8) runs it: a subprocess per message.

pipe(8) defers on 75 and bounces on other sysexits codes and on 1; output
that starts with ``4.x.x``/``5.x.x`` sets the DSN.  These tests check the
exit status, that status line, the log lines, and what the store recorded.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT, clean_env, make_desk, make_mail, pad_to, run

LOG_LINE = re.compile(r"^postdesk/filter\[\d+\]: ")


def _stderr(p: subprocess.CompletedProcess) -> str:
    return p.stderr.decode("utf-8", "replace")


def _tickets(desk) -> list[dict]:
    return desk.json("ticket", "list")


@pytest.fixture
def desk(tmp_path):
    return make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db")


@pytest.fixture
def any_desk(tmp_path, store_url):
    """The same test on SQLite and on PostgreSQL."""
    return make_desk(tmp_path / "desk", store_url)


def test_new_ticket_then_tagged_followup(any_desk):
    desk = any_desk
    first = make_mail(subject="Printer on fire", body="The printer in room 4 is on fire.\n")
    p = desk.filter(first, "alice@customer.example", ("support@example.com",), "--queue-id", "4BxT2k1Z3n", "--client-address", "192.0.2.7")
    assert p.returncode == 0, _stderr(p)
    assert p.stdout == b""
    log = _stderr(p)
    assert all(LOG_LINE.match(line) for line in log.splitlines()), log
    assert re.search(r"postdesk/filter\[\d+\]: 4BxT2k1Z3n: msgid=<[^>]+> from=<alice@customer.example> ticket=1000 outcome=created", log), log

    reply = make_mail(subject="Re: [#1000] Printer on fire", body="Now it is smoking too.\n")
    p = desk.filter(reply, "alice@customer.example", ("support@example.com",), "--queue-id", "5CyU3l2A4o")
    assert p.returncode == 0, _stderr(p)
    assert "5CyU3l2A4o: " in _stderr(p) and "ticket=1000 outcome=updated" in _stderr(p)

    ticket = desk.json("ticket", "show", "1000")
    assert ticket["number"] == 1000
    assert ticket["subject"] == "Printer on fire"
    assert ticket["requester"] == "alice@customer.example"
    texts = [a["text"] for a in ticket["actions"]]
    assert len(texts) == 2
    assert "on fire" in texts[0] and "smoking" in texts[1]
    assert [t["number"] for t in _tickets(desk)] == [1000]


def test_same_message_twice_is_recorded_once(any_desk):
    desk = any_desk
    raw = make_mail(message_id="twice@customer.example")
    first = desk.filter(raw)
    second = desk.filter(raw)
    assert (first.returncode, second.returncode) == (0, 0), _stderr(first) + _stderr(second)
    assert "outcome=created" in _stderr(first)
    assert "outcome=duplicate" in _stderr(second)
    tickets = _tickets(desk)
    assert len(tickets) == 1
    assert len(desk.json("ticket", "show", str(tickets[0]["number"]))["actions"]) == 1


def test_locked_store_defers_then_retry_records_once(tmp_path):
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", store={"busy_timeout": 0.2})
    raw = make_mail(message_id="locked@customer.example")
    # Another writer holds the write lock (the store writes with BEGIN IMMEDIATE).
    holder = sqlite3.connect(tmp_path / "desk" / "postdesk.db", isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        p = desk.filter(raw, "alice@customer.example", ("support@example.com",), "--queue-id", "LOCKED1")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert p.returncode == 75, _stderr(p)
    assert p.stdout.decode().startswith("4."), p.stdout
    assert "LOCKED1: " in _stderr(p)
    assert _tickets(desk) == []

    p = desk.filter(raw)
    assert p.returncode == 0, _stderr(p)
    assert "outcome=created" in _stderr(p)
    p = desk.filter(raw)  # Postfix retried once more after all: still once
    assert p.returncode == 0 and "outcome=duplicate" in _stderr(p)
    tickets = _tickets(desk)
    assert len(tickets) == 1
    assert len(desk.json("ticket", "show", str(tickets[0]["number"]))["actions"]) == 1


def test_unreachable_database_defers(tmp_path):
    # Nothing listens on port 1: connection refused, the classic "database down".
    desk = make_desk(tmp_path / "desk", "postgresql+psycopg://postgres@127.0.0.1:1/test", init=False)
    p = desk.filter(make_mail(), "alice@customer.example", ("support@example.com",), "--queue-id", "DOWN1")
    assert p.returncode == 75, _stderr(p)
    assert re.match(rb"4\.\d\.\d ", p.stdout), p.stdout
    assert "DOWN1: " in _stderr(p)


def test_too_big_is_refused_with_5_3_4(desk):
    small = make_desk(desk.root.parent / "small", f"sqlite:///{desk.root.parent}/small/postdesk.db", limits={"max_message_bytes": 2048})
    raw = pad_to(make_mail(), 4096)
    p = small.filter(raw, "alice@customer.example", ("support@example.com",), "--queue-id", "BIG1")
    out = p.stdout.decode()
    # pipe(8) reads a DSN only at the very start of the output.
    assert out.startswith("5.3.4 "), out
    assert p.returncode not in (0, 1, 75)
    assert p.returncode == 65  # EX_DATAERR: bounce
    assert "BIG1: " in _stderr(p) and "outcome=rejected" in _stderr(p)
    assert _tickets(small) == []
    # Exactly at the limit is fine.
    p = small.filter(pad_to(make_mail(), 2048))
    assert p.returncode == 0, _stderr(p)


def test_empty_input_is_refused(desk):
    for raw in (b"", b"\n\n"):
        p = desk.filter(raw)
        assert re.match(r"5\.\d\.\d ", p.stdout.decode()), p.stdout
        assert p.returncode not in (0, 1, 75), p.returncode
    assert _tickets(desk) == []


def test_bad_config_key_defers_and_names_the_key(tmp_path):
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", init=False, organization={"colour": "blue"})
    p = desk.filter(make_mail())
    assert p.returncode == 75, _stderr(p)
    assert "organization.colour" in _stderr(p)
    assert p.stdout.decode().startswith("4.3.5 ")
    assert all(LOG_LINE.match(line) for line in _stderr(p).splitlines())


def test_missing_config_file_defers(tmp_path):
    p = run("--config", str(tmp_path / "nope.toml"), "filter", "--sender", "a@b.example", "--recipient", "support@example.com", input=make_mail())
    assert p.returncode == 75
    assert "nope.toml" in _stderr(p)


def test_config_from_environment(desk):
    p = run("filter", "--sender", "alice@customer.example", "--recipient", "support@example.com", input=make_mail(), env=clean_env(POSTDESK_CONFIG=str(desk.config)))
    assert p.returncode == 0, _stderr(p)
    assert len(_tickets(desk)) == 1


def test_recipients_as_pipe_expands_them(desk):
    # pipe(8) expands ${recipient} to one argument per recipient.
    raw = make_mail(to="support@example.com, bob@partner.example")
    p = desk.cli("filter", "--sender", "alice@customer.example", "--recipient", "bob@partner.example", "support@example.com", input=raw)
    assert p.returncode == 0, _stderr(p)
    assert "outcome=created" in _stderr(p)


def test_not_for_us_is_accepted_and_not_recorded(desk):
    raw = make_mail(to="someone@example.com")
    p = desk.filter(raw, "alice@customer.example", ("someone@example.com",))
    assert p.returncode == 0, _stderr(p)
    assert _tickets(desk) == []


def test_null_sender_bounce_without_ticket_is_ignored(desk):
    raw = make_mail(sender="MAILER-DAEMON@mx.customer.example", subject="Undelivered Mail Returned to Sender")
    p = desk.filter(raw, "", ("support@example.com",))
    assert p.returncode == 0, _stderr(p)
    assert _tickets(desk) == []


def test_master_cf_usage_error_defers_instead_of_bouncing(desk):
    # A typo in the pipe(8) command line must not bounce support mail:
    # 75 keeps it queued, and the 4.3.5 line tells the admin why.
    p = desk.cli("filter", "--recipient", "support@example.com", input=make_mail())
    assert p.returncode == 75
    assert _stderr(p).startswith("4.3.5 ") and "--sender" in _stderr(p)
    assert _tickets(desk) == []


def test_usage_error_elsewhere_is_64_not_1(desk):
    p = desk.cli("ticket", "show")
    assert p.returncode == 64
    assert "usage:" in _stderr(p)


def test_unexpected_exception_defers_with_one_traceback(desk):
    code = (
        "import sys, postdesk.ingest as i\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('kaboom')\n"
        "i.ingest = boom\n"
        "from postdesk.cli import main\n"
        f"sys.exit(main(['--config', {str(desk.config)!r}, 'filter', '--sender', 'a@customer.example', '--recipient', 'support@example.com', '--queue-id', 'BOOM1']))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], input=make_mail(), capture_output=True, cwd=ROOT, env=clean_env(), timeout=60)
    err = _stderr(p)
    assert p.returncode == 75, err
    assert p.stdout.decode().startswith("4.3.0 ")
    assert err.count("Traceback (most recent call last)") == 1, err
    assert "RuntimeError: kaboom" in err and "BOOM1: unexpected error" in err
    assert all(LOG_LINE.match(line) for line in err.splitlines()), err
    assert _tickets(desk) == []


def test_pipe_path_imports_neither_pymilter_nor_alembic(desk):
    code = (
        "import sys\n"
        "from postdesk.cli import main\n"
        f"rc = main(['--config', {str(desk.config)!r}, 'filter', '--sender', 'alice@customer.example', '--recipient', 'support@example.com'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('Milter', 'milter', 'alembic'))\n"
        "sys.stderr.write('\\nMODULES ' + repr(heavy) + '\\n')\n"
        "sys.exit(rc)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], input=make_mail(), capture_output=True, cwd=ROOT, env=clean_env(), timeout=60)
    err = _stderr(p)
    assert p.returncode == 0, err
    assert "outcome=created" in err  # it really went through the store
    assert "MODULES []" in err, err


def test_attachment_through_the_pipe(desk):
    blob = bytes(range(256)) * 40
    raw = make_mail(attachments=[("report.bin", "application/octet-stream", blob)])
    p = desk.filter(raw)
    assert p.returncode == 0, _stderr(p)
    assert "attachments=1" in _stderr(p)
    ticket = desk.json("ticket", "show", "1000")
    (att,) = ticket["actions"][0]["attachments"]
    assert att["filename"] == "report.bin" and att["size"] == len(blob)
    out = desk.root / "out.bin"
    p = desk.cli("attachment", "get", str(att["id"]), "-o", str(out))
    assert p.returncode == 0, _stderr(p)
    assert out.read_bytes() == blob


def test_json_of_a_pipe_recorded_ticket_is_valid_utf8(desk):
    raw = make_mail(subject="Drucker brennt \u2013 bitte helfen", body="Gr\u00fc\u00dfe aus K\u00f6ln\n")
    assert desk.filter(raw).returncode == 0
    p = desk.cli("ticket", "show", "1000", "--json")
    data = json.loads(p.stdout.decode("utf-8"))
    assert data["subject"] == "Drucker brennt \u2013 bitte helfen"


def test_master_cf_argument_form_takes_any_address(desk):
    # contrib's master.cf passes --sender=${sender}: an address beginning
    # with '-' is a value, not an option, and an empty one is the null sender.
    raw = make_mail(sender="Dash <-dash@customer.example>")
    p = desk.cli("filter", "--sender=-dash@customer.example", "--recipient=support@example.com", "--queue-id=DASH1", input=raw)
    assert p.returncode == 0, _stderr(p)
    assert [t["requester"] for t in _tickets(desk)] == ["-dash@customer.example"]
    bounce = make_mail(sender="MAILER-DAEMON@mx.customer.example", subject="Undelivered Mail Returned to Sender", message_id="b1@mx")
    p = desk.cli("filter", "--sender=", "--recipient=support@example.com", input=bounce)
    assert p.returncode == 0, _stderr(p)
    assert len(_tickets(desk)) == 1


def test_new_ticket_rate_defers_with_4_7_1_and_exit_75(tmp_path):
    """[limits] new_tickets_per_sender: over it, pipe(8) gets exit 75 and a
    4.7.1 line (Postfix retries later); nothing is recorded."""
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", limits={"new_tickets_per_sender": 1})
    first = desk.filter(make_mail(subject="One", message_id="one@customer.example"), "alice@customer.example")
    assert first.returncode == 0, _stderr(first)
    second = desk.filter(make_mail(subject="Two", message_id="two@customer.example"), "alice@customer.example")
    assert second.returncode == 75, _stderr(second)
    assert second.stdout.startswith(b"4.7.1 too many new tickets from alice@customer.example"), second.stdout
    assert "outcome=deferred" in _stderr(second)
    assert len(_tickets(desk)) == 1
