"""What the subcommand modules share: the store."""

from __future__ import annotations


def open_store(config):
    from postdesk.store import Store

    return Store.from_config(config)
