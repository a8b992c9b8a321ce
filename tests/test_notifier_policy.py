"""The notifier's policy alone (``postdesk.notifier.policy``): plain rows in,
decisions out; no store, no SMTP, no clock but the one passed in."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from postdesk.notifier import policy
from postdesk.outbox_rows import AckHistory, ActionRow, Claimed, Defer, Job, ParticipantRow, PastUpdate, Person, Skip

T0 = datetime(2026, 11, 27, 12, 0, 0)
BOB = Person("bob@example.com", "Bob", staff=True)
ANN = Person("ann@a.test", "Ann")
BEN = Person("ben@b.test", "Ben")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def action(i: int, author: Person | None = BOB, seconds: float = 0, kind: str = "message", **kw) -> ActionRow:
    return ActionRow(id=i, kind=kind, public=True, author=author, text=f"text {i}", new_text=f"new {i}", created_at=at(seconds), **kw)


def ack_row(row_id: int, to: str, flags=frozenset()) -> Claimed:
    return Claimed(row_id, 1, "ack", 1, 1000, "Subject", "open", True, Person(to), T0, action=action(row_id, Person(to), flags=flags))


def update_row(to: Person = ANN, mark: int = 1, candidates=(), **kw) -> Claimed:
    return Claimed(
        9, 1, "update", 1, 1000, "Subject", "open", True, to, T0,
        participant=ParticipantRow("requester", False, mark, "m@a.test"),
        candidates=tuple(candidates), **kw,
    )


@pytest.mark.parametrize(
    "address, key",
    [("jane+x@example.org", "jane@example.org"), ("Jane@Example.ORG", "jane@example.org"), ("jane@example.org", "jane@example.org"),
     ("+x@example.org", "+x@example.org"), ("a+b+c@x.test", "a@x.test"), ("nobody", "nobody")],
)
def test_sender_key(address, key):
    assert policy.sender_key(address) == key


def test_acks_counted_in_row_order_with_other_workers_claims(config):
    """ack_limit 3: one sent in the window, one claimed by another worker
    under a lower row id; of this batch only the first to jane goes."""
    history = AckHistory(sent={"jane@example.org": 1}, in_flight=((1, "jane+other@example.org"),))
    batch = [ack_row(5, "jane+a@example.org"), ack_row(6, "JANE@example.org"), ack_row(7, "joe@example.org")]
    out = policy.decide(batch, history, config, T0)
    assert [type(d) for d in out] == [Job, Skip, Job]
    assert out[1].reason == "rate limit (3 acknowledgements to this sender in 3600 s)"


def test_global_cap_counts_every_sender(make_config):
    cfg = make_config(notifier={"ack_global_limit": 2})
    out = policy.decide([ack_row(i, f"u{i}@spam.test") for i in range(1, 5)], AckHistory(sent={"old@x.test": 1}), cfg, T0)
    assert [type(d) for d in out] == [Job, Skip, Skip, Skip]
    assert out[1].reason == "global rate limit (2 acknowledgements in 3600 s)"


def test_no_ack_for_automatic_mail_or_the_mail_system(config):
    out = policy.decide(
        [ack_row(1, "mailer-daemon@x.test"), ack_row(2, "postmaster"), ack_row(3, "a@x.test", frozenset({"auto", "bulk"}))],
        AckHistory(sent={}), config, T0,
    )
    assert [d.reason for d in out] == ["null sender", "null sender", "auto-submitted (auto,bulk)"]


def test_update_holds_new_public_actions_but_not_their_own(config):
    c = update_row(candidates=[action(1), action(2), action(3, ANN), action(4, BOB, delivered_to=frozenset({"ann@a.test"})), action(5)])
    job = policy.decide([c], AckHistory(sent={}), config, at(300))[0]
    assert isinstance(job, Job)
    assert [e.id for e in job.entries] == [2, 5] and job.up_to_action_id == 5 and job.since_action_id == 1
    assert [e.text for e in job.entries] == ["new 2", "new 5"]


def test_nothing_new_advances_the_mark(config):
    c = update_row(candidates=[action(1), action(2, ANN)])
    skip = policy.decide([c], AckHistory(sent={}), config, at(300))[0]
    assert isinstance(skip, Skip) and skip.advance and skip.up_to_action_id == 2


def test_late_carries_a_message_made_public_below_the_mark_once(config):
    past = (PastUpdate(since_action_id=1, action_ids=frozenset({3, 4})),)
    c = update_row(mark=4, candidates=[action(1), action(2), action(3), action(4), action(5)], past=past)
    job = policy.decide([c], AckHistory(sent={}), config, at(300))[0]
    assert [e.id for e in job.entries] == [2, 5]


def test_update_cap_defers_until_the_window_allows(make_config):
    cfg = make_config(notifier={"update_limit": 2, "update_window": 3600})
    c = update_row(candidates=[action(2)], sent_in_window=(at(100), at(50)))
    d = policy.decide([c], AckHistory(sent={}), cfg, at(300))[0]
    assert isinstance(d, Defer) and d.until == at(3650)


def test_the_store_never_imports_the_notifier():
    code = "import sys, postdesk.store, postdesk.store.outbox; print(sorted(m for m in sys.modules if m.startswith('postdesk.notifier')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
