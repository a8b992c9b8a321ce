"""The store at its boundary: ``postdesk.store.Store`` and the adapters'
``GroupCommit`` are what ingest and its adapters type against
(``postdesk.ingest.MessageStore``), and they close what they opened."""

from __future__ import annotations

from postdesk.ingest import MessageStore
from postdesk.store import Store
from postdesk.store.groupcommit import GroupCommit


def test_store_and_group_commit_are_message_stores(config):
    store = Store.from_config(config)
    writer = GroupCommit(store)
    try:
        assert isinstance(store, MessageStore)
        assert isinstance(writer, MessageStore)
        assert writer.url == store.url  # the rest passes through
    finally:
        writer.close()


def test_group_commit_close_closes_the_store_and_stop_does_not():
    closed = []

    class Fake:
        def record(self, *a, **kw):
            return None

        def close(self) -> None:
            closed.append(True)

    GroupCommit(Fake()).stop()
    assert closed == []
    GroupCommit(Fake()).close()
    assert closed == [True]
