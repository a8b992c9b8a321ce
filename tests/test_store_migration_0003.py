"""Revision 0003 on a database that has data: message_ids keeps its rows,
gains the digest, and ids keep counting; downgrade goes back."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from postdesk.store.engine import make_engine
from postdesk.store.migrate import alembic_config, upgrade

T = datetime(2026, 12, 1, 12, 0, 0)


def test_upgrade_keeps_message_ids_and_downgrade_returns(make_config, store_url):
    cfg = make_config(store_url)
    engine = make_engine(cfg.store.url, 10.0, create=True)
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO message_ids (key, ours, created_at) VALUES (:k, :o, :t)"),
                [{"k": "a@x", "o": False, "t": T}, {"k": "b@x", "o": True, "t": T}],
            )
        upgrade(engine, "head")
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT key, digest FROM message_ids ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [("a@x", ""), ("b@x", "")]
            # The same key with another digest is a row of its own; the same pair is refused.
            conn.execute(text("INSERT INTO message_ids (key, digest, ours, created_at) VALUES ('a@x', 'd1', false, :t)"), {"t": T})
            new_id = conn.execute(text("SELECT MAX(id) FROM message_ids")).scalar()
            assert new_id == 3  # the id sequence continued after the copied rows
            assert "auth" in {c["name"] for c in inspect(conn).get_columns("actions")}
        with pytest.raises(IntegrityError):
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO message_ids (key, digest, ours, created_at) VALUES ('a@x', 'd1', false, :t)"), {"t": T})
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT id, key FROM message_ids ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [(1, "a@x"), (2, "b@x")]
            assert "auth" not in {c["name"] for c in inspect(conn).get_columns("actions")}
    finally:
        engine.dispose()
