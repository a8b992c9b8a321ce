"""A fresh schema of a PostgreSQL database for one test or benchmark run.

Each run gets a schema of its own, so runs never share tables: not two
tests, not a test and a benchmark on the same database, not a run and what
an earlier one left behind.  ``create(base_url, prefix)`` makes the schema
(the prefix and 12 random hex digits) and returns a ``FreshSchema`` whose
``url`` is ``base_url`` with the connection's ``search_path`` set to it, so
the store creates and finds its tables there without knowing; ``drop()``
removes the schema and everything in it afterwards.

    schema = pgschema.create("postgresql+psycopg://postgres@127.0.0.1:5432/test", prefix="pd_bench_")
    try:
        run(schema.url)
    finally:
        schema.drop()

Used by tests/conftest.py (the ``pg_url`` fixture) and ``bench/``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import quote

import sqlalchemy


@dataclass(frozen=True)
class FreshSchema:
    base_url: str  # the database URL given to create()
    name: str  # the schema's name
    url: str  # base_url with search_path set to the schema

    def drop(self) -> None:
        """``DROP SCHEMA ... CASCADE``: the schema and every table in it."""
        _execute(self.base_url, f'DROP SCHEMA "{self.name}" CASCADE')


def create(base_url: str, prefix: str = "pd_") -> FreshSchema:
    """Create a schema named ``prefix`` + 12 random hex digits in ``base_url``'s database."""
    name = prefix + uuid.uuid4().hex[:12]
    _execute(base_url, f'CREATE SCHEMA "{name}"')
    # libpq's "options" sets search_path on every connection of the URL,
    # pooled or not; base_url may already carry query parameters.
    sep = "&" if "?" in base_url else "?"
    return FreshSchema(base_url, name, f"{base_url}{sep}options={quote(f'-csearch_path={name}')}")


def _execute(url: str, statement: str) -> None:
    # An engine for this one statement, disposed at once: no idle connection
    # is held while the run uses the database, and none goes stale before
    # drop() if the run restarts the server.
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(statement))
    finally:
        engine.dispose()
