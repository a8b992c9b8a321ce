"""``postdesk import``: mail delivered while the milter was down (with
milter_default_action = accept) becomes tickets through the same ingest path,
once: a second import, or a message the milter already had, is a duplicate.
"""

from __future__ import annotations

import json
import mailbox

from cli_helpers import make_desk, make_mail


def _delivered(raw: bytes) -> bytes:
    # What Postfix's local(8) puts on a delivered copy.
    return b"Return-Path: <alice@customer.example>\nX-Original-To: support@example.com\nDelivered-To: support@example.com\n" + raw


def test_import_mbox_and_maildir_once(tmp_path):
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db")
    seen = make_mail(subject="Recorded by the milter", message_id="seen@customer.example")
    desk.record(seen)
    box = mailbox.mbox(str(tmp_path / "support.mbox"))
    box.add(_delivered(seen))
    box.add(_delivered(make_mail(subject="Arrived while the milter was down", message_id="down1@customer.example")))
    box.close()
    md = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    md.add(_delivered(make_mail(subject="Also while down", message_id="down2@customer.example")))
    md.close()

    p = desk.cli("import", str(tmp_path / "support.mbox"), str(tmp_path / "Maildir"))
    assert p.returncode == 0, p.stderr.decode()
    assert "3 messages: 2 created, 1 duplicate" in p.stdout.decode()
    subjects = sorted(t["subject"] for t in json.loads(desk.cli("ticket", "list", "--json").stdout))
    assert subjects == ["Also while down", "Arrived while the milter was down", "Recorded by the milter"]
    assert b"IMPORT:" in p.stderr and b"outcome=created" in p.stderr  # one log line per message

    again = desk.cli("import", str(tmp_path / "support.mbox"), str(tmp_path / "Maildir"))
    assert again.returncode == 0 and "3 messages: 3 duplicate" in again.stdout.decode()
    assert len(json.loads(desk.cli("ticket", "list", "--json").stdout)) == 3


def test_import_of_a_missing_source_exits_66(tmp_path):
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db")
    p = desk.cli("import", str(tmp_path / "nope.mbox"))
    assert p.returncode == 66 and b"nope.mbox" in p.stderr


def test_import_stops_with_75_when_the_store_fails(tmp_path):
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db")
    box = mailbox.mbox(str(tmp_path / "support.mbox"))
    box.add(_delivered(make_mail(subject="x", message_id="x@customer.example")))
    box.close()
    (tmp_path / "desk" / "postdesk.db").unlink()
    (tmp_path / "desk" / "postdesk.db").mkdir()  # not a database: the store cannot open it
    p = desk.cli("import", str(tmp_path / "support.mbox"))
    assert p.returncode == 75, (p.returncode, p.stderr.decode())
    assert b"run the same import again" in p.stderr


def test_import_refuses_a_message_over_the_size_limit_and_exits_65(tmp_path):
    """The importer checks [limits] max_message_bytes before ingest, as the
    milter and the pipe do: the big one is refused (logged), the rest recorded."""
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", limits={"max_message_bytes": 2048})
    box = mailbox.mbox(str(tmp_path / "support.mbox"))
    box.add(_delivered(make_mail(subject="Small", message_id="small@customer.example")))
    box.add(_delivered(make_mail(subject="Big", message_id="big@customer.example", body="x" * 4000 + "\n")))
    box.close()
    p = desk.cli("import", str(tmp_path / "support.mbox"))
    assert p.returncode == 65, (p.returncode, p.stderr.decode())
    assert "2 messages: 1 created, 1 rejected" in p.stdout.decode()
    assert b"outcome=rejected" in p.stderr and b"more than the limit of 2048 bytes" in p.stderr
    assert [t["subject"] for t in json.loads(desk.cli("ticket", "list", "--json").stdout)] == ["Small"]
