"""The desk's clock: naive UTC, as the store keeps every time.

Read at the edges (the milter and pipe adapters through ``ingest``, the
notifier's worker, the CLI) and passed inward, so the filter and the store
never read the clock themselves and tests inject theirs.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo (the store's columns are naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)
