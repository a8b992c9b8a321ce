"""The ``postdesk`` admin commands through a real subprocess.

Each command: its happy path, its error path, the sysexits status (never 1),
and the JSON shape the README promises to scripts.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import need

from postdesk import config as configmod
from tests.cli_helpers import ROOT, clean_env, make_desk, make_mail, run, write_config

TICKET_KEYS = {"number", "subject", "status", "visible_to_customers", "requester", "created_at"}
ACTION_KEYS = {"id", "author", "public", "text", "message_id", "attachments"}
ATTACHMENT_KEYS = {"id", "filename", "content_type", "size", "sha256"}
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 16 + b"\n%%EOF\n"


def err(p: subprocess.CompletedProcess) -> str:
    return p.stderr.decode("utf-8", "replace")


def out(p: subprocess.CompletedProcess) -> str:
    return p.stdout.decode("utf-8", "replace")


@pytest.fixture
def desk(tmp_path):
    return make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db")


def _fill(desk):
    """Two tickets: 1000 (with a reply and an attachment) and 1001."""
    first = make_mail(subject="Printer on fire", body="Room 4 printer is on fire.\n", attachments=[("photo.pdf", "application/pdf", PDF)])
    assert desk.record(first).ticket == 1000
    reply = make_mail(subject="Re: [#1000] Printer on fire", body="Still burning.\n")
    assert desk.record(reply).ticket == 1000
    other = make_mail(subject="Password reset", sender="Bob <bob@customer.example>", body="Cannot log in.\n")
    assert desk.record(other, "bob@customer.example").ticket == 1001
    return desk


@pytest.fixture
def busy_desk(desk):
    """For tests that change tickets."""
    return _fill(desk)


@pytest.fixture(scope="module")
def shared_desk(tmp_path_factory):
    """The same two tickets, for tests that only read (set up once)."""
    root = tmp_path_factory.mktemp("shared")
    return _fill(make_desk(root / "desk", f"sqlite:///{root}/desk/postdesk.db"))


# --- usage ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["ticket"],
        ["ticket", "show"],
        ["ticket", "show", "x"],
        ["ticket", "list", "--status", "resolved"],
        ["ticket", "status", "1000", "resolved"],
        ["ticket", "visibility", "1000", "everyone"],
        ["action", "toggle"],
        ["attachment", "get", "1"],
        ["outbox", "list", "--bogus"],
        ["config"],
        ["notifier", "--twice"],
    ],
)
def test_usage_errors_exit_64(args):
    p = run(*args)
    assert p.returncode == 64, (args, err(p))
    assert "usage: postdesk" in err(p)


def test_help_exits_0():
    p = run("--help")
    assert p.returncode == 0
    for command in ("init", "milter", "filter", "notifier", "ticket", "action", "attachment", "outbox", "config", "check"):
        assert command in out(p)
    p = run("ticket", "show", "--help")
    assert p.returncode == 0 and "--json" in out(p)


def test_console_script_and_module_agree():
    script = Path(sys.executable).with_name("postdesk")
    need(script.exists(), "console script not installed (pip install -e .)")
    p = subprocess.run([str(script), "--help"], capture_output=True, env=clean_env())
    assert p.returncode == 0 and b"COMMAND" in p.stdout


# --- configuration ------------------------------------------------------------------


def test_missing_config_exits_78(tmp_path):
    p = run("--config", str(tmp_path / "absent.toml"), "ticket", "list")
    assert p.returncode == 78
    assert "absent.toml" in err(p)


def test_default_config_path_is_etc(tmp_path):
    p = run("config", "show")
    if Path(configmod.DEFAULT_PATH).exists():  # the Debian package is installed here
        assert p.returncode == 0, err(p)
        assert f"from {configmod.DEFAULT_PATH}" in out(p)
    else:
        assert p.returncode == 78
        assert configmod.DEFAULT_PATH in err(p)


@pytest.mark.parametrize(
    "sections, key",
    [
        ({"organization": {"colour": "blue"}}, "organization.colour"),
        ({"limits": {"max_message_bytes": "big"}}, "limits.max_message_bytes"),
        ({"organization": {"reply_to": "not an address"}}, "organization.reply_to"),
        ({"notifier": {"smtp": "localhost"}}, "notifier.smtp"),
    ],
)
def test_bad_config_exits_78_naming_the_key(tmp_path, sections, key):
    cfg = write_config(tmp_path / "bad.toml", f"sqlite:///{tmp_path}/x.db", tmp_path / "att", **sections)
    for command in (["config", "show"], ["ticket", "list"], ["init"], ["check"], ["notifier", "--once"]):
        p = run("--config", str(cfg), *command)
        assert p.returncode == 78, (command, err(p))
        assert key in err(p), err(p)
    assert not (tmp_path / "x.db").exists()


def test_broken_toml_exits_78(tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[organization\nname = 1\n")
    p = run("--config", str(cfg), "config", "show")
    assert p.returncode == 78 and "broken.toml" in err(p)


def test_config_show_prints_effective_toml(tmp_path):
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/x.db", tmp_path / "att", notifier={"quiet_period": 30}, milter={"socket_mode": "0600"})
    p = run("--config", str(cfg), "config", "show")
    assert p.returncode == 0, err(p)
    text = out(p)
    assert "[organization]" in text and "[limits]" in text
    assert "quiet_period = 30.0" in text
    assert "max_message_bytes = 26214400" in text  # a default, filled in
    # It is TOML, and loading it back gives the same configuration.
    shown = tomllib.loads(text)
    loaded = configmod.load(cfg)
    assert configmod.from_dict(shown).as_dict() == loaded.as_dict()
    assert shown["milter"]["socket_mode"] == "0600"


def test_config_option_after_the_subcommand_and_from_env(tmp_path):
    cfg = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/x.db", tmp_path / "att", organization={"name": "Acme Widgets"})
    p = run("config", "show", "--config", str(cfg))
    assert p.returncode == 0 and 'name = "Acme Widgets"' in out(p)
    p = run("config", "show", env=clean_env(POSTDESK_CONFIG=str(cfg)))
    assert p.returncode == 0 and 'name = "Acme Widgets"' in out(p)
    # --config wins over the environment.
    p = run("--config", str(tmp_path / "absent.toml"), "config", "show", env=clean_env(POSTDESK_CONFIG=str(cfg)))
    assert p.returncode == 78


# --- init ------------------------------------------------------------------------------


def test_init_creates_database_and_attachment_dir_and_is_idempotent(tmp_path):
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", init=False)
    p = desk.cli("init")
    assert p.returncode == 0, err(p)
    assert (tmp_path / "desk" / "postdesk.db").exists()
    assert desk.attachments.is_dir()
    p = desk.cli("init")
    assert p.returncode == 0, err(p)
    assert desk.json("ticket", "list") == []


def test_init_on_postgresql(tmp_path, pg_url):
    desk = make_desk(tmp_path / "desk", pg_url)
    assert desk.json("ticket", "list") == []
    assert desk.cli("init").returncode == 0


def test_store_unreachable_exits_75(tmp_path):
    desk = make_desk(tmp_path / "desk", "postgresql+psycopg://postgres@127.0.0.1:1/test", init=False)
    for command in (["init"], ["ticket", "list"], ["ticket", "show", "1000"], ["outbox", "list"]):
        p = desk.cli(*command)
        assert p.returncode == 75, (command, err(p))
        assert "Traceback" not in err(p)


# --- tickets ---------------------------------------------------------------------------------


def test_ticket_list_empty(desk):
    p = desk.cli("ticket", "list")
    assert p.returncode == 0 and "no tickets" in out(p)
    assert desk.json("ticket", "list") == []


def test_ticket_list_table_and_json(shared_desk):
    desk = shared_desk
    p = desk.cli("ticket", "list")
    assert p.returncode == 0, err(p)
    lines = out(p).splitlines()
    assert lines[0].split() == ["number", "status", "visible", "owner", "requester", "created", "subject"]
    assert any(line.startswith("#1000 ") and "Printer on fire" in line and "alice@customer.example" in line for line in lines)
    assert any(line.startswith("#1001 ") and "Password reset" in line for line in lines)
    # Aligned: the subject column starts at the same offset on every row.
    starts = {line.index(word) for line, word in zip(lines[1:], ["Printer", "Password"]) if word in line}
    assert len(starts) == 1

    tickets = desk.json("ticket", "list")
    assert sorted(t["number"] for t in tickets) == [1000, 1001]
    for t in tickets:
        assert TICKET_KEYS <= set(t), t
        assert "actions" not in t
        assert t["status"] == "open" and t["visible_to_customers"] is True
        assert isinstance(t["created_at"], str)


def test_ticket_show_json_shape(shared_desk):
    t = shared_desk.json("ticket", "show", "1000")
    assert TICKET_KEYS | {"actions"} <= set(t)
    assert t["number"] == 1000 and t["subject"] == "Printer on fire" and t["requester"] == "alice@customer.example"
    assert len(t["actions"]) == 2
    for a in t["actions"]:
        assert ACTION_KEYS <= set(a), a
        assert isinstance(a["id"], int) and isinstance(a["public"], bool)
        assert a["author"] == "alice@customer.example"
    (att,) = t["actions"][0]["attachments"]
    assert ATTACHMENT_KEYS <= set(att)
    assert att["filename"] == "photo.pdf" and att["content_type"] == "application/pdf"
    assert att["size"] == len(PDF) and att["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert t["actions"][1]["attachments"] == []
    assert t["actions"][0]["auth"] == {"spf": "none", "dkim": "none", "dmarc": "none", "verified": False}


def test_ticket_show_human(shared_desk):
    p = shared_desk.cli("ticket", "show", "1000")
    assert p.returncode == 0, err(p)
    text = out(p)
    assert "[#1000] Printer on fire" in text
    assert "Room 4 printer is on fire." in text and "Still burning." in text
    assert "photo.pdf" in text and "application/pdf" in text
    # The verdict per action (the suite's DNS publishes nothing: all "none").
    assert "auth: spf=none dkim=none dmarc=none (not verified)" in text


def test_ticket_show_missing_exits_66(desk):
    p = desk.cli("ticket", "show", "4242")
    assert p.returncode == 66
    assert "4242" in err(p) and "Traceback" not in err(p)
    p = desk.cli("ticket", "show", "4242", "--json")
    assert p.returncode == 66 and p.stdout == b""


def test_ticket_status(busy_desk):
    desk = busy_desk
    p = desk.cli("ticket", "status", "1000", "closed")
    assert p.returncode == 0, err(p)
    assert "1000" in out(p) and "closed" in out(p)
    assert desk.json("ticket", "show", "1000")["status"] == "closed"
    assert [t["number"] for t in desk.json("ticket", "list", "--status", "closed")] == [1000]
    assert [t["number"] for t in desk.json("ticket", "list", "--status", "open")] == [1001]
    # The customer gets a status mail (status_change_emails is on).
    updates = [r for r in desk.json("outbox", "list") if r.get("kind") == "update"]
    assert any(r.get("recipient") == "alice@customer.example" for r in updates), updates
    p = desk.cli("ticket", "status", "1000", "closed")
    assert p.returncode == 0 and "already" in out(p)
    p = desk.cli("ticket", "status", "1000", "open")
    assert p.returncode == 0
    assert desk.json("ticket", "show", "1000")["status"] == "open"


def test_ticket_status_missing_exits_66(desk):
    p = desk.cli("ticket", "status", "4242", "closed")
    assert p.returncode == 66 and "4242" in err(p)


def test_ticket_visibility(busy_desk):
    desk = busy_desk
    p = desk.cli("ticket", "visibility", "1001", "internal")
    assert p.returncode == 0, err(p)
    assert desk.json("ticket", "show", "1001")["visible_to_customers"] is False
    p = desk.cli("ticket", "visibility", "1001", "customers")
    assert p.returncode == 0, err(p)
    assert desk.json("ticket", "show", "1001")["visible_to_customers"] is True
    p = desk.cli("ticket", "visibility", "4242", "internal")
    assert p.returncode == 66 and "4242" in err(p)


# --- actions and attachments -------------------------------------------------------------------


def test_action_toggle(busy_desk):
    desk = busy_desk
    action = desk.json("ticket", "show", "1001")["actions"][0]
    assert action["public"] is True
    p = desk.cli("action", "toggle", str(action["id"]))
    assert p.returncode == 0, err(p)
    assert "private" in out(p)
    assert desk.json("ticket", "show", "1001")["actions"][0]["public"] is False
    p = desk.cli("action", "toggle", str(action["id"]))
    assert p.returncode == 0 and "public" in out(p)
    assert desk.json("ticket", "show", "1001")["actions"][0]["public"] is True


def test_action_toggle_missing_exits_66(desk):
    p = desk.cli("action", "toggle", "999999")
    assert p.returncode == 66 and "999999" in err(p)


def test_attachment_get_writes_identical_bytes(shared_desk, tmp_path):
    desk = shared_desk
    att = desk.json("ticket", "show", "1000")["actions"][0]["attachments"][0]
    target = tmp_path / "got.pdf"
    p = desk.cli("attachment", "get", str(att["id"]), "-o", str(target))
    assert p.returncode == 0, err(p)
    assert target.read_bytes() == PDF
    p = desk.cli("attachment", "get", str(att["id"]), "-o", "-")
    assert p.returncode == 0 and p.stdout == PDF
    assert [f for f in os.listdir(tmp_path) if f.startswith(".postdesk-")] == []


def test_attachment_get_errors(shared_desk, tmp_path):
    desk = shared_desk
    p = desk.cli("attachment", "get", "999999", "-o", str(tmp_path / "x"))
    assert p.returncode == 66 and "999999" in err(p)
    assert not (tmp_path / "x").exists()
    att = desk.json("ticket", "show", "1000")["actions"][0]["attachments"][0]
    p = desk.cli("attachment", "get", str(att["id"]), "-o", str(tmp_path / "no" / "such" / "dir" / "x"))
    assert p.returncode == 73, err(p)  # EX_CANTCREAT
    assert "Traceback" not in err(p)


def test_attachment_get_keeps_an_existing_file_without_force(shared_desk, tmp_path):
    desk = shared_desk
    att = desk.json("ticket", "show", "1000")["actions"][0]["attachments"][0]
    target = tmp_path / "mine.pdf"
    target.write_bytes(b"the admin's own file")
    p = desk.cli("attachment", "get", str(att["id"]), "-o", str(target))
    assert p.returncode == 73, err(p)
    assert "exists" in err(p) and "--force" in err(p)
    assert target.read_bytes() == b"the admin's own file"
    assert [f for f in os.listdir(tmp_path) if f.startswith(".postdesk-")] == []
    p = desk.cli("attachment", "get", str(att["id"]), "-o", str(target), "--force")
    assert p.returncode == 0, err(p)
    assert target.read_bytes() == PDF


def test_ticket_show_neutralises_bidi_and_control_characters(desk):
    # U+202E turns "cod.exe" into "exe.doc" on screen; ESC would drive the terminal.
    desk.record(make_mail(subject="Invoice \u202egpj.exe", body="see \x1b[31mred\x1b[0m and \u2066isolated\u2069\n"))
    p = desk.cli("ticket", "show", "1000")
    assert p.returncode == 0, err(p)
    text = out(p)
    for bad in ("\u202e", "\u2066", "\u2069", "\x1b"):
        assert bad not in text, repr(bad)
    assert "Invoice \\u202egpj.exe" in text  # shown, escaped
    assert "[31mred" in text
    # --json keeps the stored text exactly (JSON escapes controls itself).
    data = json.loads(desk.cli("ticket", "show", "1000", "--json").stdout)
    assert data["subject"] == "Invoice \u202egpj.exe"


# --- outbox ------------------------------------------------------------------------------------------


def test_outbox_list(shared_desk):
    desk = shared_desk
    rows = desk.json("outbox", "list")
    assert isinstance(rows, list) and rows
    kinds = {r["kind"] for r in rows}
    assert {"ack", "alert"} <= kinds, rows
    assert any(r.get("recipient") == "team@example.com" for r in rows)
    p = desk.cli("outbox", "list")
    assert p.returncode == 0, err(p)
    lines = out(p).splitlines()
    assert lines[0].split()[:2] == ["id", "kind"]
    assert len(lines) == len(rows) + 1


def test_outbox_list_empty(desk):
    p = desk.cli("outbox", "list")
    assert p.returncode == 0 and "empty" in out(p)
    assert desk.json("outbox", "list") == []


# --- the long-running parts, started through the CLI ------------------------------------------------


def test_notifier_once_on_empty_outbox(desk):
    p = desk.cli("notifier", "--once")
    assert p.returncode == 0, err(p)


def test_check_never_exits_1(desk):
    p = desk.cli("check")
    assert p.returncode in (0, 69, 78), err(p)


def test_milter_starts_on_its_socket_and_stops_on_sigterm(tmp_path):
    sock = tmp_path / "milter.sock"
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", milter={"socket": f"unix:{sock}"})
    proc = subprocess.Popen([sys.executable, "-m", "postdesk", "--config", str(desk.config), "milter"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=clean_env())
    try:
        deadline = time.monotonic() + 15
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert sock.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no socket"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    assert rc != 1


def test_milter_with_bad_config_exits_78(tmp_path):
    cfg = write_config(tmp_path / "bad.toml", f"sqlite:///{tmp_path}/x.db", tmp_path / "att", milter={"socket": "/no/scheme"})
    p = run("--config", str(cfg), "milter")
    assert p.returncode == 78 and "milter.socket" in err(p)


def test_json_is_parseable_by_scripts(shared_desk):
    p = shared_desk.cli("ticket", "show", "1000", "--json")
    data = json.loads(p.stdout)
    assert json.loads(json.dumps(data)) == data


# --- departments and owners ----------------------------------------------------------------

BILLING = [{"name": "Billing", "addresses": ["billing@example.com"], "team": ["billing-team@example.com"], "reply_to": "billing@example.com"}]


def test_ticket_list_by_department_and_json_department(tmp_path):
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", departments=BILLING)
    assert desk.record(make_mail(subject="Invoice wrong", to="billing@example.com"), recipients=("billing@example.com",)).ticket == 1000
    # To both: one ticket, and the configured department wins over the default.
    both = make_mail(subject="Both", to="support@example.com, billing@example.com")
    assert desk.record(both, recipients=("support@example.com", "billing@example.com")).ticket == 1001
    assert desk.record(make_mail(subject="Printer")).ticket == 1002
    by_number = {t["number"]: t for t in desk.json("ticket", "list")}
    assert [by_number[n]["department"] for n in (1000, 1001, 1002)] == ["Billing", "Billing", None]
    assert [t["number"] for t in desk.json("ticket", "list", "--department", "billing")] == [1000, 1001]
    p = desk.cli("ticket", "list")
    assert out(p).splitlines()[0].split()[3] == "department" and "(default)" in out(p)
    p = desk.cli("ticket", "list", "--department", "Sales")
    assert p.returncode == 64 and "no department 'Sales' (known: Billing)" in err(p)
    assert "department: Billing" in out(desk.cli("ticket", "show", "1000"))


def test_ticket_assign(busy_desk):
    desk = busy_desk
    assert desk.json("ticket", "show", "1000")["owner"] is None
    p = desk.cli("ticket", "assign", "1000", "Bob@Example.com")
    assert p.returncode == 0 and "owner now bob@example.com" in out(p), err(p)
    assert desk.json("ticket", "show", "1000")["owner"] == "bob@example.com"
    assert "owner:      bob@example.com" in out(desk.cli("ticket", "show", "1000"))
    assert "already owned by bob@example.com" in out(desk.cli("ticket", "assign", "1000", "bob@example.com"))
    # Only staff: nothing changes, exit 65 with the reason.
    p = desk.cli("ticket", "assign", "1000", "mallory@customer.example")
    assert p.returncode == 65 and "mallory@customer.example is not staff" in err(p)
    p = desk.cli("ticket", "assign", "1000", "not an address")
    assert p.returncode == 65 and "is not an address" in err(p)
    p = desk.cli("ticket", "assign", "1000", "support@example.com")
    assert p.returncode == 65 and "own addresses" in err(p)
    assert desk.json("ticket", "show", "1000")["owner"] == "bob@example.com"
    assert desk.cli("ticket", "assign", "1000", "none").returncode == 0
    assert desk.json("ticket", "show", "1000")["owner"] is None
    p = desk.cli("ticket", "assign", "9999", "none")
    assert p.returncode == 66 and "no ticket #9999" in err(p)


def test_ticket_merge_and_show(busy_desk):
    desk = busy_desk
    p = desk.cli("ticket", "merge", "1001", "1000")
    assert p.returncode == 0, err(p)
    assert "1001" in out(p) and "merged into 1000" in out(p)
    t = desk.json("ticket", "show", "1001")
    assert (t["status"], t["merged_into"], t["owner"], t["follow_up_of"]) == ("closed", 1000, None, None)
    assert t["closed_at"] and "department" in t
    assert "bob@customer.example" in {p["address"] for p in desk.json("ticket", "show", "1000")["participants"]}
    text = out(desk.cli("ticket", "show", "1001"))
    assert "merged into: [#1000]" in text and "closed:" in text
    # A cycle and a self-merge: a clear error, exit 65, nothing changed.
    for args, why in ((("1000", "1001"), "cycle"), (("1000", "1000"), "itself")):
        p = desk.cli("ticket", "merge", *args)
        assert p.returncode == 65 and why in err(p) and "Traceback" not in err(p), err(p)
    assert desk.json("ticket", "show", "1000")["merged_into"] is None
    p = desk.cli("ticket", "merge", "1000", "4242")
    assert p.returncode == 66 and "4242" in err(p)


def test_a_new_ticket_records_the_customers_language(desk):
    desk.record(make_mail(body="Hallo, der Drucker in Raum 4 brennt und ich kann nicht drucken. Bitte helfen Sie mir.\n"))
    desk.record(make_mail(subject="Other", body="x\n").replace(b"Subject: Other\n", b"Subject: Other\nContent-Language: fr\n"))
    assert json.loads(desk.cli("ticket", "show", "1000", "--json").stdout)["language"] == "de"
    assert json.loads(desk.cli("ticket", "show", "1001", "--json").stdout)["language"] == "fr"
