"""What the subcommand modules share: the store, the clock."""

from __future__ import annotations

from postdesk.clock import utcnow as now  # read here, at the edge, and passed in


def open_store(config):
    from postdesk.store import Store

    return Store.from_config(config)
