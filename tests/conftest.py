"""Shared fixtures: configurations, stores on SQLite and PostgreSQL, services.

A test that needs a service it cannot find skips with the reason; with
``POSTDESK_REQUIRE_SERVICES=1`` (set by ``.ci/run``) it fails instead, so CI
never passes by skipping.
"""

from __future__ import annotations

import atexit
import copy
import os
from pathlib import Path

import pytest

from postdesk import config as configmod
from postdesk.testing.dns import DNSServer

REQUIRE_SERVICES = os.environ.get("POSTDESK_REQUIRE_SERVICES") == "1"
PG_URL = os.environ.get("POSTDESK_TEST_PG_URL", "")
MAIL_DIR = Path(__file__).parent / "data" / "mail"


def need(available: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a service is missing."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"POSTDESK_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


# Sender authentication is on by default: every test that ingests mail asks
# DNS.  The suite's answers come from this loopback server (empty: every name
# is NXDOMAIN, so SPF/DKIM/DMARC are "none"), never from the machine's resolver.
SUITE_DNS = DNSServer().start()
atexit.register(SUITE_DNS.stop)

BASE_CONFIG = {
    "organization": {
        "name": "Example Inc",
        "system_addresses": ["support@example.com", "help@example.com"],
        "reply_to": "support@example.com",
        "team": ["team@example.com"],
        "staff": ["@example.com"],
        "status_change_emails": True,
        "tag": "#",
        "first_ticket_number": 1000,
    },
    "notifier": {"quiet_period": 120, "tick": 1},
    # Nothing is trusted by default; these tests send staff mail from loopback.
    # Acks need an authenticated author; the suite's DNS publishes nothing
    # (all "none"), so its customers are acknowledged as unauthenticated.
    "trust": {"trusted_networks": ["127.0.0.0/8", "::1/128"], "ack_unauthenticated": True},
    "dns": {"nameservers": [SUITE_DNS.address], "timeout": 2},
}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for section, values in extra.items():
        if isinstance(values, list):  # an array of tables: [[departments]]
            out[section] = copy.deepcopy(values)
        else:
            out.setdefault(section, {}).update(values)
    return out


@pytest.fixture
def make_config(tmp_path):
    """make_config(store_url=None, **{"section": {...}}) -> Config."""

    def make(store_url: str | None = None, **sections) -> configmod.Config:
        data = _merge(
            BASE_CONFIG,
            {
                "store": {
                    "url": store_url or f"sqlite:///{tmp_path}/postdesk.db",
                    "attachments": str(tmp_path / "attachments"),
                }
            },
        )
        data = _merge(data, sections)
        return configmod.from_dict(data, source="<test>")

    return make


@pytest.fixture
def config(make_config):
    return make_config()


def _pg_reachable() -> bool:
    if not PG_URL:
        return False
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(PG_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_reachable()


@pytest.fixture
def pg_url(pg_available):
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    need(bool(PG_URL), "POSTDESK_TEST_PG_URL is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    need(pg_available, f"PostgreSQL at {PG_URL} is not reachable")
    from postdesk.testing import pgschema

    schema = pgschema.create(PG_URL, prefix="pd_")
    yield schema.url
    schema.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/postdesk.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def cfg(make_config, store_url):
    """A config whose store is on SQLite or PostgreSQL (see store_url)."""
    return make_config(store_url)


@pytest.fixture
def store(cfg):
    """An initialised store for ``cfg``; closed afterwards."""
    from postdesk.store import Store

    s = Store.from_config(cfg)
    s.init(cfg.organization.first_ticket_number)
    yield s
    s.close()
