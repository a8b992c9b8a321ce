"""Alembic environment for postdesk's store.

Run through ``postdesk init`` (``postdesk.store.migrate.upgrade``), which hands
over an open connection in ``config.attributes["connection"]``; there is no
alembic.ini to keep in step with the config file.
"""

from alembic import context

from postdesk.store.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
