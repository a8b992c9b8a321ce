"""The store's frequent queries read through indexes on a large store, on
SQLite and PostgreSQL (postdesk/store/plans.py; bench/large_store.py prints
the same plans at 10^6 tickets)."""

from __future__ import annotations

import pytest
from test_store_support import T0

from postdesk.store import Store, migrate, plans
from postdesk.store.engine import make_engine
from postdesk.testing import bulk

# Enough rows that PostgreSQL's planner prefers an index wherever one
# serves (on a few hundred rows a sequential scan is cheaper, and right).
SIZE = {"sqlite": 3000, "postgresql": 20000}


@pytest.fixture
def big(store):
    n = SIZE[store.engine.dialect.name]
    filled = bulk.fill(store, n, now=T0)
    return store, filled


def sample_of(store: Store, filled: bulk.Filled):
    i = filled.first_index + filled.count // 2
    with store.engine.connect() as conn:
        return plans.sample(conn, filled.first_number + i - filled.first_index, bulk.message_key(i, 1), T0)


def test_hot_queries_use_their_indexes(big):
    store, filled = big
    s = sample_of(store, filled)
    with store.engine.connect() as conn:
        assert plans.problems(conn, s) == {}
        # The plans name the indexes (what the bench prints).
        report = plans.report(conn, s)
    assert set(report) == set(plans.HOT)
    assert any("ix_tickets_requester_created" in line for line in report["tickets opened by a sender"])


def test_bulk_rows_are_where_the_lookups_find_them(big):
    """The Message-ID keys bulk.message_key names lead to their ticket."""
    from postdesk.store.view import KnownView

    store, filled = big
    with store.engine.connect() as conn:
        known = KnownView(conn, store.secret)
        for i in (0, filled.count // 3, filled.count - 1):
            number = filled.first_number + i
            assert known.ticket(number) is not None
            assert known.ticket_for_message_ids([f"<{bulk.message_key(i, 2)}>"]) == number
            assert known.message_seen(bulk.message_key(i, 0))
        conn.rollback()
    assert store.list_tickets(limit=3, after=filled.first_number)[0]["number"] == filled.first_number + 1


def test_full_scans_are_recognised():
    assert plans.full_scans(["SCAN tickets", "SEARCH people USING INDEX x (a=?)", "SCAN t USING COVERING INDEX ix"]) == ["tickets"]
    assert plans.full_scans(["  ->  Seq Scan on outbox  (cost=0.00..1.00 rows=1 width=4)", "Index Scan using x on y"]) == ["outbox"]
    assert plans.missing_indexes(["SEARCH tickets USING INDEX sqlite_autoindex_tickets_1 (number=?)"], ("tickets.number", "a|b")) == ["a|b"]


def test_revision_0006_is_what_stops_the_scan(tmp_path):
    """At revision 0004 the new-ticket rate limit read every ticket; 0006's
    index makes it a search (SQLite, whose planner needs no statistics)."""
    from alembic.command import downgrade

    url = f"sqlite:///{tmp_path}/old.db"
    store = Store(url, tmp_path / "attachments")
    store.init(1000)
    engine = make_engine(url, create=True)
    with engine.begin() as conn:
        downgrade(migrate.alembic_config(conn), "0004")
    engine.dispose()
    filled = bulk.fill(store, 500, now=T0)
    query = plans.HOT["tickets opened by a sender"]
    s = sample_of(store, filled)
    with store.engine.connect() as conn:
        assert "tickets" in plans.full_scans(plans.explain(conn, query.statement, query.params(s)))
    engine = make_engine(url, create=True)
    migrate.upgrade(engine)
    engine.dispose()
    with store.engine.connect() as conn:
        assert plans.problems(conn, s) == {}
    store.close()
