"""The store at its boundary: ``postdesk.store.Store`` and the milter's
``SerializedStore`` are what ingest and its adapters type against
(``postdesk.ingest.MessageStore``), and they close what they opened."""

from __future__ import annotations

from postdesk.ingest import MessageStore
from postdesk.milter.serial import SerializedStore, for_milter
from postdesk.store import Store


def test_store_and_serialized_store_are_message_stores(config):
    store = Store.from_config(config)
    try:
        assert isinstance(store, MessageStore)
        assert isinstance(for_milter(store, "sqlite:///x.db"), SerializedStore)
        assert isinstance(for_milter(store, "sqlite:///x.db"), MessageStore)
        assert for_milter(store, "postgresql+psycopg://h/db") is store
    finally:
        store.close()


def test_serialized_close_closes_the_store():
    closed = []

    class Fake:
        def record(self, *a, **kw):
            return None

        def close(self) -> None:
            closed.append(True)

    SerializedStore(Fake()).close()
    assert closed == [True]
