"""What the subcommand modules share: the store, the clock."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    """Naive UTC, as the store keeps it; read here, at the edge, and passed in."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def open_store(config):
    from postdesk.store import Store

    return Store.from_config(config)
