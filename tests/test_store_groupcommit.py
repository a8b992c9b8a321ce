"""Group commit (postdesk.store.groupcommit): waiting messages share one
transaction, each answered only after its commit, and one message's
trouble stays its own.  On SQLite and PostgreSQL where a real store is used."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from test_store_support import ENVELOPE, T0, new

from postdesk.filter.decision import Decision, Kind
from postdesk.outcomes import Outcome, Result
from postdesk.store import fastexec
from postdesk.store.errors import StoreUnavailable
from postdesk.store.groupcommit import GroupCommit
from postdesk.store.models import Person, Ticket


def _record_all(writer: GroupCommit, decisions: list[Decision], cfg) -> list:
    """Each decision recorded from its own thread, all at once; results in order."""
    out: list = [None] * len(decisions)
    start = threading.Barrier(len(decisions), timeout=10)

    def one(i: int) -> None:
        start.wait()
        try:
            out[i] = writer.record(lambda known, d=decisions[i]: d, ENVELOPE, cfg, T0)
        except Exception as e:  # compared below
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(decisions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


class Gate:
    """A fake store whose first transaction waits, so the others queue behind it."""

    def __init__(self, fail: set[int] | None = None, unavailable: bool = False):
        self.first = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[int]] = []
        self.alone: list[int] = []
        self.fail = fail or set()
        self.unavailable = unavailable

    def record_batch(self, items, done=None):
        if not self.batches:
            self.batches.append([it[0](None).ticket for it in items])
            self.first.set()
            self.release.wait(10)
            return [Result(Outcome.CREATED, ticket=it[0](None).ticket) for it in items]
        numbers = [it[0](None).ticket for it in items]
        self.batches.append(numbers)
        if self.unavailable:
            raise StoreUnavailable("store: database is locked")
        if self.fail & set(numbers):
            raise ValueError("one message the store cannot take")
        return [Result(Outcome.CREATED, ticket=n) for n in numbers]

    def record(self, decide, envelope, config, now):
        n = decide(None).ticket
        self.alone.append(n)
        if n in self.fail:
            raise ValueError(f"message {n} cannot be taken")
        return Result(Outcome.CREATED, ticket=n)


def _queue_behind_first(gate: Gate, writer: GroupCommit, count: int) -> list:
    """One message holds the writer; ``count`` more queue; then it is released."""
    results: list = [None] * (count + 1)

    def one(i: int) -> None:
        try:
            results[i] = writer.record(lambda k, i=i: Decision(kind=Kind.NEW, message_key=f"m{i}", ticket=i), ENVELOPE, None, T0)
        except Exception as e:  # compared by the tests
            results[i] = e

    first = threading.Thread(target=one, args=(0,))
    first.start()
    assert gate.first.wait(10)
    others = [threading.Thread(target=one, args=(i,)) for i in range(1, count + 1)]
    for t in others:
        t.start()
    # The others are queued once the writer's queue holds them all.
    deadline = threading.Event()
    for _ in range(200):
        if writer._queue.qsize() == count:
            break
        deadline.wait(0.01)
    gate.release.set()
    for t in [first, *others]:
        t.join(10)
    return results


def test_messages_waiting_together_share_one_transaction():
    gate = Gate()
    writer = GroupCommit(gate, max_batch=16)
    try:
        results = _queue_behind_first(gate, writer, 5)
    finally:
        writer.stop()
    assert gate.batches == [[0], [1, 2, 3, 4, 5]]
    assert [r.ticket for r in results] == [0, 1, 2, 3, 4, 5]
    assert gate.alone == []


def test_a_batch_is_at_most_max_batch_messages():
    gate = Gate()
    writer = GroupCommit(gate, max_batch=2)
    try:
        _queue_behind_first(gate, writer, 5)
    finally:
        writer.stop()
    assert [len(b) for b in gate.batches] == [1, 2, 2, 1]


def test_one_bad_message_fails_alone_and_the_others_are_recorded():
    gate = Gate(fail={3})
    writer = GroupCommit(gate)
    try:
        results = _queue_behind_first(gate, writer, 4)
    finally:
        writer.stop()
    assert gate.batches[1] == [1, 2, 3, 4]  # tried together, rolled back
    assert gate.alone == [1, 2, 3, 4]  # then each alone
    assert isinstance(results[3], ValueError)
    assert [r.ticket for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4]


def test_an_unavailable_store_fails_the_batch_at_once():
    # No second wait per message: each gets the 451 reason now.
    gate = Gate(unavailable=True)
    writer = GroupCommit(gate)
    try:
        results = _queue_behind_first(gate, writer, 3)
    finally:
        writer.stop()
    assert gate.alone == []
    assert all(isinstance(r, StoreUnavailable) for r in results[1:])


def test_concurrent_new_tickets_through_group_commit(store, cfg):
    writer = GroupCommit(store, max_batch=8)
    try:
        results = _record_all(writer, [new(author=f"c{i}@customer.org") for i in range(24)], cfg)
    finally:
        writer.stop()
    assert all(isinstance(r, Result) and r.outcome is Outcome.CREATED for r in results), results
    numbers = sorted(r.ticket for r in results)
    assert numbers == list(range(numbers[0], numbers[0] + 24))
    assert len(store.list_tickets()) == 24


def test_the_same_message_twice_at_once_is_one_ticket_and_a_duplicate(store, cfg):
    # In one batch the second key fails the batch; alone, it is found a duplicate.
    writer = GroupCommit(store)
    try:
        results = _record_all(writer, [new(key="twice@customer.org"), new(key="twice@customer.org")], cfg)
    finally:
        writer.stop()
    assert sorted(r.outcome.value for r in results) == ["created", "duplicate"]
    assert results[0].ticket == results[1].ticket


def test_the_fast_path_reads_and_writes_what_sqlalchemy_does(store):
    """fastexec binds and converts like Connection.execute: Boolean and DateTime."""
    people, tickets = Person.__table__, Ticket.__table__
    when = datetime(2026, 12, 3, 8, 30, 0, 1234)
    with store.engine.begin() as conn:
        pid = fastexec.execute(conn, people.insert().returning(people.c.id), {"address": "x@customer.org", "name": "X", "staff": True}).scalar_one()
        fastexec.execute(
            conn,
            tickets.insert(),
            {"number": 77, "subject": "s", "status": "open", "visible_to_customers": False, "requester_id": pid, "created_at": when, "updated_at": when},
        )
        q = select(people.c.staff, tickets.c.created_at, tickets.c.visible_to_customers).join(tickets, tickets.c.requester_id == people.c.id)
        fast_row = fastexec.execute(conn, q, {}).first()
        plain_row = tuple(conn.execute(q).first())
    assert fast_row == plain_row == (True, when, False)


def test_the_fast_path_raises_sqlalchemys_integrity_error(store):
    people = Person.__table__
    stmt = people.insert().returning(people.c.id)
    with pytest.raises(sa_exc.IntegrityError):
        with store.engine.begin() as conn:
            for _ in range(2):
                fastexec.execute(conn, stmt, {"address": "same@customer.org", "name": "", "staff": False})
