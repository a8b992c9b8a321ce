"""The per-message statements, run on the driver's cursor.

Every support message runs about ten prebuilt Core statements (apply.py,
view.py, updates.py) on the store's one writer.  SQLAlchemy's
``Connection.execute`` costs 30-50 us a statement here on top of the
driver's own 3-11 us (an INSERT ... RETURNING and a SELECT by key on
SQLite, 2,000 each), about a tenth of a new ticket's CPU.  So ``execute``
compiles each statement once per dialect and set of parameter names, as
SQLAlchemy's cache does, and runs it on the DBAPI cursor of the same
connection, inside the same transaction; the parameters go through the
same bind processors SQLAlchemy would apply.  Driver errors are wrapped as
SQLAlchemy's own (``IntegrityError``, ``OperationalError``, ...) so the
callers and ``postdesk.store.errors`` see what they saw before.

Constant column defaults, the statement's own literals (``LIMIT 1``) and
result types the dialect converts (SQLite's Boolean and DateTime) are
handled as SQLAlchemy handles them.  A statement that needs more of what
only SQLAlchemy's execution does (callable column defaults, expanding
``IN`` parameters, RETURNING from several rows at once) is handed to
SQLAlchemy unchanged: the fast path is an optimisation, never a second
meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

# (statement, dialect name, parameter names) -> how to run it, or None: SQLAlchemy runs it.
_PLANS: dict[tuple[int, str, tuple[str, ...]], _Plan | None] = {}
_KEEP: dict[int, ClauseElement] = {}  # the statements of _PLANS' keys stay alive (ids stay unique)


class _Plan:
    __slots__ = ("sql", "names", "processors", "fixed", "positional", "returns", "results")

    def __init__(self, sql: str, names: Sequence[str], processors: Mapping[str, Callable[[Any], Any]], fixed: Mapping[str, Any], positional: bool, returns: bool, results: Sequence[Callable[[Any], Any] | None]) -> None:
        self.sql = sql
        self.names = tuple(names)
        self.processors = dict(processors)
        self.fixed = dict(fixed)  # the statement's own values (LIMIT 1, a column's scalar default)
        self.positional = positional
        self.returns = returns
        self.results = tuple(results) if any(results) else ()

    def bind(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        procs, fixed = self.processors, self.fixed
        values = [params[n] if n in params else fixed[n] for n in self.names]
        values = [procs[n](v) if n in procs else v for n, v in zip(self.names, values)]
        return tuple(values) if self.positional else dict(zip(self.names, values))

    def row(self, raw: Sequence[Any]) -> tuple:
        if not self.results:
            return tuple(raw)
        return tuple(v if p is None or v is None else p(v) for p, v in zip(self.results, raw))


def _plan(conn: Connection, stmt: Any, keys: tuple[str, ...]) -> _Plan | None:
    dialect = conn.dialect
    compiled: Any = stmt.compile(dialect=dialect, column_keys=list(keys))
    if (
        getattr(compiled, "update_prefetch", None)
        or getattr(compiled, "post_compile_params", None)  # expanding IN (...)
        or getattr(compiled, "literal_execute_params", None)
        or compiled.has_out_parameters
    ):
        return None
    fixed: dict[str, Any] = {}
    for column in getattr(compiled, "insert_prefetch", None) or ():
        # A Python-side default: a constant is bound like the rest; a callable is SQLAlchemy's to call.
        default = column.default
        if default is None or not default.is_scalar:
            return None
        fixed[column.key] = default.arg
    for bind, name in compiled.bind_names.items():
        if name not in keys and name not in fixed:
            if bind.callable is not None or (bind.value is None and bind.required):
                return None
            fixed[name] = bind.value  # the statement's own literal (LIMIT 1, value + 1)
    results: list[Callable[[Any], Any] | None] = []
    for entry in getattr(compiled, "_result_columns", ()) or ():
        results.append(entry[3]._cached_result_processor(dialect, None))  # SQLite: Boolean, DateTime
    names = list(compiled.positiontup or ()) if dialect.positional else list(compiled.bind_names.values())
    processors = {n: p for n, p in compiled._bind_processors.items() if n in names}
    returns = bool(compiled.returning) or stmt.is_select
    return _Plan(compiled.string, names, processors, fixed, dialect.positional, returns, results)


class Rows:
    """The part of SQLAlchemy's Result the store uses, over fetched rows."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[tuple], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._rows)

    def all(self) -> list[tuple]:
        return list(self._rows)

    def first(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def one(self) -> tuple:
        if len(self._rows) != 1:
            raise sa_exc.NoResultFound("No row was found when one was required") if not self._rows else sa_exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise sa_exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return self._rows[0][0] if self._rows else None

    def scalars(self) -> Scalars:
        return Scalars([r[0] for r in self._rows])


class Scalars(list):
    """``Result.scalars()``: the first column's values."""

    def all(self) -> list:
        return list(self)

    def first(self) -> Any:
        return self[0] if self else None


def execute(conn: Connection | Session, stmt: Any, params: Any = None) -> Any:
    """``conn.execute(stmt, params)``, on the driver's cursor where that is the same."""
    if not isinstance(conn, Connection) or not conn.in_transaction():
        # An ORM Session (the admin operations), or a connection whose
        # transaction SQLAlchemy has yet to begin (BEGIN IMMEDIATE on
        # SQLite, see engine.py): as before.
        return conn.execute(stmt, params)
    many = isinstance(params, (list, tuple))
    first: Mapping[str, Any] = (params[0] if params else {}) if many else (params or {})
    keys = tuple(sorted(first))
    key = (id(stmt), conn.dialect.name, keys)
    try:
        plan = _PLANS[key]
    except KeyError:
        plan = _PLANS[key] = _plan(conn, stmt, keys)
        _KEEP[id(stmt)] = stmt
    if plan is None or (many and plan.returns) or (many and not params):
        return conn.execute(stmt, params)
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    bound: Any = None
    try:
        if many:
            bound = [plan.bind(p) for p in params]
            cursor.executemany(plan.sql, bound)
            return Rows([], cursor.rowcount)
        bound = plan.bind(first)
        cursor.execute(plan.sql, bound)
        rows = cursor.fetchall() if plan.returns else []
        return Rows([plan.row(r) for r in rows], cursor.rowcount)
    except conn.dialect.loaded_dbapi.Error as e:
        raise sa_exc.DBAPIError.instance(plan.sql, bound, e, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect) from e
    finally:
        cursor.close()
