"""postdesk's store: tickets, actions, attachments, Message-IDs and the outbox.

The only package that imports SQLAlchemy.  ``Store.record`` applies one
filter Decision per message in one transaction; ``Store.init`` creates or
upgrades the schema (``postdesk init``); the admin methods serve the CLI.
Modules: engine (SQLite/PostgreSQL setup), core (Store), apply (a Decision),
view (the filter's Known view), updates (debounced customer updates),
blobs (attachment bytes: database rows or files), admin (CLI queries), errors, models, migrate.
"""

from __future__ import annotations

from postdesk.store.core import Store
from postdesk.store.errors import StoreNotInitialised, StoreUnavailable
from postdesk.store.updates import queue_updates

__all__ = ["Store", "StoreUnavailable", "StoreNotInitialised", "queue_updates"]
