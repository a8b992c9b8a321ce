"""The models and the newest Alembic revision describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from postdesk.store import Store
from postdesk.store.migrate import alembic_config
from postdesk.store.models import Base


def test_models_match_newest_migration(make_config, store_url):
    cfg = make_config(store_url)
    store = Store.from_config(cfg)
    store.init()
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "target_metadata": Base.metadata})
        diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], diff
        head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
        assert ctx.get_current_revision() == head
        assert set(inspect(conn).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    store.close()
