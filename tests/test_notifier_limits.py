# ruff: noqa: F811  (the desk and sink fixtures are imported from test_notifier)
"""The notifier's caps and hygiene against a real store and a real SMTP
server (aiosmtpd on loopback), with the clock injected: acknowledgement caps
per sender (plus-address variants are one sender) and in all, updates per
ticket and recipient per window, loops of header-less auto-responders, a
permanent failure that must not block later mail, long and bidi file names."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from test_notifier import TEAM, desk, rows, sink  # noqa: F401 (fixtures)
from test_store_support import T0, attachment, followup, new, record, staff_reply

from postdesk.filter.decision import Envelope
from postdesk.ingest import ingest
from postdesk.store.models import Action

BIDI = "\u202e\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_plus_address_variants_are_one_sender(desk, sink):
    cfg, store, worker, clock = desk(notifier={"ack_limit": 2})
    for i, tag in enumerate(("", "+a", "+b", "+c")):
        record(store, new(author=f"jane{tag}@customer.org", subject=f"Problem {i}"), cfg, now=clock.at(i))
    clock.now = clock.at(5)
    worker.run_pass()
    acks = rows(store, kind="ack")
    assert [o.state for o in acks] == ["sent", "sent", "suppressed", "suppressed"]
    assert "rate limit (2 acknowledgements to this sender" in acks[2].last_error
    assert len(sink.to(TEAM)) == 4  # the team hears of every ticket


def test_global_ack_cap_across_senders(desk, sink, store_url):
    cfg, store, worker, clock = desk(store_url, notifier={"ack_limit": 3, "ack_global_limit": 5, "ack_window": 3600})
    for i in range(8):
        record(store, new(author=f"forged{i}@spam.test", subject=f"Win {i}"), cfg, now=clock.at(i))
    clock.now = clock.at(10)
    worker.run_pass()
    acks = rows(store, kind="ack")
    assert [o.state for o in acks] == ["sent"] * 5 + ["suppressed"] * 3
    assert all("global rate limit (5 acknowledgements in 3600 s)" in o.last_error for o in acks[5:])
    # The cap counts what was sent in the window, over passes.
    record(store, new(author="late@spam.test", subject="Again"), cfg, now=clock.at(20))
    clock.now = clock.at(20)
    worker.run_pass()
    assert rows(store, kind="ack")[-1].state == "suppressed"
    # After the window, acknowledgements go again.
    record(store, new(author="real@customer.org", subject="Help"), cfg, now=clock.at(3700))
    clock.now = clock.at(3700)
    worker.run_pass()
    assert rows(store, kind="ack")[-1].state == "sent"


def test_updates_per_ticket_and_recipient_are_capped(desk, sink, store_url):
    """update_limit 2 per 3600 s: the third update waits for the window, then
    carries everything since, in one mail; nothing is lost."""
    cfg, store, worker, clock = desk(store_url, notifier={"update_limit": 2, "update_window": 3600, "quiet_period": 60})
    record(store, new(), cfg, now=T0)
    worker.run_pass()
    sink.got.clear()
    for i in range(5):
        t = 100 + i * 200
        record(store, staff_reply(1000, text=f"Reply {i}\n", new_text=f"Reply {i}"), cfg, now=clock.at(t))
        clock.now = clock.at(t + 61)
        worker.run_pass()
        clock.now = T0
    got = sink.to("alice@customer.org")
    assert len(got) == 2
    (held,) = rows(store, kind="update", state="queued")
    first_sent = min(o.sent_at for o in rows(store, kind="update", state="sent"))
    assert held.due_at == first_sent + timedelta(seconds=3600)
    assert "rate limit (2 updates to this recipient on this ticket in 3600 s)" in held.last_error
    clock.now = held.due_at
    worker.run_pass()
    got = sink.to("alice@customer.org")
    assert len(got) == 3
    assert all(f"Reply {i}" in got[2].text for i in (2, 3, 4))


def test_two_autoresponders_without_rfc3834_headers_converge(desk, sink, store_url):
    """Two customers whose auto-responders answer every mail within seconds,
    with no Auto-Submitted header, their answers ingested as any customer's
    reply is: the filter's timing rule (``rules.automatic``) makes them
    private, so the desk stops relaying them to each other; staff still see
    every one."""
    cfg, store, worker, clock = desk(store_url, notifier={"quiet_period": 120})
    record(store, new(author="ann@a.test", cc=("ben@b.test",)), cfg, now=T0)
    worker.run_pass()
    record(store, staff_reply(1000, text="We are on it.\n", new_text="We are on it."), cfg, now=clock.at(10))
    per_round = []
    for n in range(8):
        clock.now = clock.at(200)
        before = len(sink.got)
        worker.run_pass()
        fresh = [g for g in sink.got[before:] if TEAM not in g.recipients]
        per_round.append(len(fresh))
        for i, g in enumerate(fresh):  # each auto-responder answers within 5 s, a plain "Re:"
            (who,) = g.recipients
            m = g.message
            raw = (
                f"From: {who}\r\nTo: support@example.com\r\nSubject: Re: {m['Subject']}\r\n"
                f"Message-ID: <away{n}.{i}@{who.partition('@')[2]}>\r\nIn-Reply-To: {m['Message-ID']}\r\n"
                "Date: Tue, 01 Dec 2026 09:00:00 +0000\r\n\r\nI am away.\r\n"
            ).encode()
            env = Envelope(sender=who, recipients=("support@example.com",), queue_id=f"AWAY{n}{i}", client_address="192.0.2.10")
            assert ingest(raw, env, store, cfg, now=clock.at(5)).ticket == 1000
    assert sum(per_round) <= 4 and per_round[-6:] == [0] * 6, per_round
    with store.session(read_only=True) as s:
        away = s.scalars(select(Action).where(Action.new_text == "I am away.").order_by(Action.id)).all()
        assert len(away) == sum(per_round)  # staff see every answer
        assert "auto" in away[-1].flags.split() and not away[-1].public  # the filter flagged the machine's answer


def test_a_permanent_failure_does_not_block_later_updates(desk, sink, store_url):
    cfg, store, worker, clock = desk(store_url)
    record(store, new(), cfg, now=T0)
    worker.run_pass()
    sink.got.clear()
    record(store, staff_reply(1000, text="First\n", new_text="First"), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    sink.replies = ["500 5.5.2 line too long"]
    assert worker.run_pass().failed == 1
    record(store, staff_reply(1000, text="Second\n", new_text="Second"), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    assert worker.run_pass().sent == 1
    (got,) = sink.to("alice@customer.org")
    assert "Second" in got.text and "First" not in got.text
    # A later toggle-driven "late" pass does not bring the failed one back either.
    record(store, staff_reply(1000, text="Third\n", new_text="Third"), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    assert "First" not in sink.to("alice@customer.org")[-1].text


def test_long_non_ascii_attachment_name_stays_under_998_octets(desk, sink):
    cfg, store, worker, clock = desk()
    name = "Überweisungsbestätigung für die Rechnung " * 20 + "ü" * 300 + ".pdf"
    record(store, new(), cfg, now=T0)
    worker.run_pass()
    record(store, staff_reply(1000, attachments=(attachment(b"%PDF-1.4 data", name, "application/pdf"),)), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    assert worker.run_pass().sent == 1
    (got,) = sink.to("alice@customer.org")[-1:]
    assert max(len(line) for line in got.data.split(b"\r\n")) <= 998
    (part,) = list(got.message.iter_attachments())
    stored = store.show_ticket(1000)["actions"][-1]["attachments"][0]["filename"]
    assert part.get_filename() == stored and part.get_content() == b"%PDF-1.4 data"


def test_bidi_controls_are_neutralised_where_people_read(desk, sink):
    cfg, store, worker, clock = desk()
    evil = f"invoice{BIDI}fdp.exe"
    d = new(
        author_name=f"Mallory{BIDI}",
        subject=f"Payment{BIDI}",
        attachments=(attachment(b"MZ", evil, "application/octet-stream"),),
        cc=("carol@customer.org",),
    )
    record(store, d, cfg, now=T0)
    worker.run_pass()
    record(store, followup(1000, author="carol@customer.org", attachments=(attachment(b"MZ", evil),)), cfg, now=clock.at(10))
    clock.now = clock.at(200)
    worker.run_pass()
    (alert,) = sink.to(TEAM)[:1]
    (update,) = sink.to("alice@customer.org")[-1:]
    for got in (alert, update):
        m = got.message
        shown = [got.text, str(m["Subject"]), str(m["To"])] + [p.get_filename() or "" for p in m.iter_attachments()]
        assert not any(c in text for text in shown for c in BIDI), shown
    assert "invoice fdp.exe" in alert.text and "Mallory" in alert.text
