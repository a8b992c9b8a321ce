"""The store's one transient error, and the mapping of driver errors onto it.

``StoreUnavailable`` means "could not record now, nothing was written: try
again later": the milter answers 451 4.3.0 and the pipe filter exits 75
(see ``postdesk.outcomes``), so the sending MTA or Postfix keeps the message
and retries.  The driver's exception is chained as ``__cause__`` so the
adapter's single traceback shows what really happened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

INIT_HINT = "run `postdesk init` to create or upgrade the database"


class StoreUnavailable(Exception):
    """Transient: database locked past busy_timeout, unreachable, disk full,
    or not initialised yet."""


class StoreNotInitialised(StoreUnavailable):
    """The database or its tables do not exist: `postdesk init` was not run."""


def _missing_table(e: BaseException) -> bool:
    """The schema is missing or older than the code: `postdesk init` fixes it."""
    text = str(getattr(e, "orig", e)).lower()
    if "no such table" in text or "no such column" in text or "has no column named" in text:  # SQLite
        return True
    orig = getattr(e, "orig", None)
    # PostgreSQL SQLSTATE 42P01 undefined_table, 42703 undefined_column.
    return getattr(orig, "sqlstate", None) in ("42P01", "42703")


def is_transient(e: BaseException) -> bool:
    if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)):
        return True
    if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
        return True
    return _missing_table(e)


def translate(e: BaseException, what: str = "store") -> StoreUnavailable | None:
    """The StoreUnavailable to raise for ``e``, or None when ``e`` is a bug."""
    if isinstance(e, StoreUnavailable):
        return e
    if _missing_table(e):
        return StoreNotInitialised(f"{what}: the postdesk schema does not exist in this database or is older than this version; {INIT_HINT}")
    if isinstance(e, OSError):
        return StoreUnavailable(f"{what}: {e.strerror or e} ({getattr(e, 'filename', '') or ''})".replace(" ()", ""))
    if is_transient(e):
        orig = getattr(e, "orig", None) or e
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return StoreUnavailable(f"{what}: {first}")
    return None


@contextlib.contextmanager
def unavailable_on_failure(what: str = "store") -> Iterator[None]:
    """Re-raise transient driver/OS errors as StoreUnavailable (cause chained)."""
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as e:
        mapped = translate(e, what)
        if mapped is None:
            raise
        raise mapped from e
