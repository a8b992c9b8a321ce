"""``postdesk purge``, ``postdesk person forget`` and ``ticket list`` paging
through the real command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest
from cli_helpers import make_desk, make_mail
from sqlalchemy import update

from postdesk.clock import utcnow


def out(p: subprocess.CompletedProcess) -> str:
    return p.stdout.decode("utf-8", "replace")


def err(p: subprocess.CompletedProcess) -> str:
    return p.stderr.decode("utf-8", "replace")


@pytest.fixture
def desk(tmp_path, store_url):
    return make_desk(tmp_path / "desk", store_url)


def age(desk, number: int, days: int, status: str = "closed") -> None:
    """Ticket ``number`` closed and last updated ``days`` ago, its mail sent."""
    from postdesk import config as configmod
    from postdesk.store import Store
    from postdesk.store.models import Outbox, Ticket

    store = Store.from_config(configmod.load(desk.config))
    when = utcnow() - timedelta(days=days)
    try:
        with store.session() as s:
            s.execute(update(Ticket).where(Ticket.number == number).values(status=status, updated_at=when, closed_at=when))
            s.execute(update(Outbox).values(state="sent"))
    finally:
        store.close()


def numbers(desk) -> list[int]:
    return [t["number"] for t in desk.json("ticket", "list", "--limit", "0")]


def test_purge_dry_run_then_purge(desk):
    a = desk.record(make_mail(subject="Old one", attachments=[("a.pdf", "application/pdf", b"%PDF-1.4 old")])).ticket
    b = desk.record(make_mail(subject="Recent one", sender="Bob <bob@customer.example>"), "bob@customer.example").ticket
    age(desk, a, 400)
    age(desk, b, 10)

    p = desk.cli("purge", "--closed-before", "365d", "--dry-run")
    assert p.returncode == 0, err(p)
    assert "would remove tickets=1 " in out(p) and "people=1" in out(p)
    assert numbers(desk) == [a, b]

    p = desk.cli("purge", "--closed-before", "365d", "--batch", "1")
    assert p.returncode == 0, err(p)
    assert "removed tickets=1 " in out(p) and "attachments=1" in out(p)
    assert numbers(desk) == [b]
    assert desk.cli("ticket", "show", str(a)).returncode == 66

    p = desk.cli("purge", "--closed-before", (utcnow() - timedelta(days=1)).date().isoformat())
    assert p.returncode == 0 and "removed tickets=1 " in out(p), err(p)
    assert numbers(desk) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--closed-before", "yesterday"], "neither a date"),
        (["--closed-before", "2999-01-01"], "in the future"),
        (["--closed-before", "30d", "--batch", "0"], "at least 1"),
        ([], "--closed-before"),
    ],
)
def test_purge_usage_errors(desk, args, message):
    p = desk.cli("purge", *args)
    assert p.returncode == 64, (out(p), err(p))
    assert message in err(p)


def test_person_forget(desk):
    own = desk.record(make_mail(subject="Mine")).ticket
    other = desk.record(
        make_mail(subject="Bob's", sender="Bob <bob@customer.example>", headers={"Cc": "alice@customer.example"}), "bob@customer.example"
    ).ticket
    desk.record(make_mail(subject=f"Re: [#{other}] Bob's", body="Me too, Alice\n"))

    p = desk.cli("person", "forget", "alice@customer.example", "--dry-run")
    assert p.returncode == 0, err(p)
    assert "would erase address=alice@customer.example requested_tickets_purged=1 actions_erased=1" in out(p)
    assert numbers(desk) == [own, other]

    p = desk.cli("person", "forget", "Alice@Customer.example")
    assert p.returncode == 0, err(p)
    assert "erased address=alice@customer.example" in out(p)
    assert numbers(desk) == [other]
    shown = json.dumps(desk.json("ticket", "show", str(other)))
    assert "alice@customer.example" not in shown.lower()
    assert "Me too" not in shown

    p = desk.cli("person", "forget", "alice@customer.example")
    assert p.returncode == 66 and "no person alice@customer.example" in err(p)
    assert desk.cli("person", "forget", "not-an-address").returncode == 64


def test_ticket_list_pages(desk):
    made = [desk.record(make_mail(subject=f"Problem {i}", sender=f"c{i}@customer.example"), f"c{i}@customer.example").ticket for i in range(5)]

    p = desk.cli("ticket", "list", "--limit", "2")
    assert p.returncode == 0, err(p)
    rows = [line for line in out(p).splitlines()[1:] if line.strip()]
    assert [r.split()[0] for r in rows] == [f"#{made[0]}", f"#{made[1]}"]
    assert f"more tickets: postdesk ticket list --limit=2 --after={made[1]}" in err(p)

    p = desk.cli("ticket", "list", "--json", "--limit", "2", "--after", str(made[1]))
    assert p.returncode == 0, err(p)
    page = json.loads(out(p))
    assert isinstance(page, list) and [t["number"] for t in page] == made[2:4]
    assert f"--json --limit=2 --after={made[3]}" in err(p)

    p = desk.cli("ticket", "list", "--json", "--limit", "2", "--after", str(made[3]))
    assert [t["number"] for t in json.loads(out(p))] == made[4:]
    assert "more tickets" not in err(p)  # the last page

    # Default: 50 a page; every ticket fits, no hint.
    p = desk.cli("ticket", "list")
    assert p.returncode == 0 and "more tickets" not in err(p)
    assert len([line for line in out(p).splitlines()[1:] if line.strip()]) == 5
    p = desk.cli("ticket", "list", "--status", "open", "--limit", "1", "--json")
    assert [t["number"] for t in json.loads(out(p))] == made[:1]
    assert f"--status open --json --limit=1 --after={made[0]}" in err(p)
    assert desk.cli("ticket", "list", "--limit", "-1").returncode == 64
