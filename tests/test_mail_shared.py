"""The helpers every adapter shares, each defined once: ``postdesk.mail``
(our header names, the reply marker, envelope address brackets),
``postdesk.clock.utcnow`` and ``postdesk.config.redact_url``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postdesk.clock import utcnow
from postdesk.config import redact_url
from postdesk.mail import REPLY_MARKER, strip_brackets

PACKAGE = Path(__file__).resolve().parent.parent / "postdesk"


@pytest.mark.parametrize("given, bare", [("<jane@example.org>", "jane@example.org"), ("jane@example.org", "jane@example.org"), ("<>", ""), ("", ""), (None, ""), (" < jane@example.org > ", "jane@example.org")])
def test_strip_brackets(given, bare):
    assert strip_brackets(given) == bare


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql+psycopg://desk:s3cret@db.example:5432/postdesk", "postgresql+psycopg://desk:***@db.example:5432/postdesk"),
        ("postgresql+psycopg://desk:a/b@c@db.example/postdesk", "postgresql+psycopg://desk:***@db.example/postdesk"),  # never a part of it
        ("postgresql+psycopg://desk@db.example/postdesk", "postgresql+psycopg://desk@db.example/postdesk"),
        ("sqlite:////var/lib/postdesk/postdesk.db", "sqlite:////var/lib/postdesk/postdesk.db"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_utcnow_is_naive_utc():
    now = utcnow()
    assert now.tzinfo is None
    assert abs(now - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=5)


def test_each_shared_helper_is_defined_once():
    defs: dict[str, list[str]] = {}
    pattern = re.compile(r"^\s*def (utcnow|redact_url|strip_brackets)\(|^(REPLY_MARKER|TICKET_HEADER|OUTCOME_HEADER|LOOP_HEADER) =", re.M)
    for path in PACKAGE.rglob("*.py"):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            defs.setdefault(m.group(1) or m.group(2), []).append(str(path.relative_to(PACKAGE)))
    assert all(len(where) == 1 for where in defs.values()), defs
    assert len(defs) == 7, defs


def test_the_reply_marker_is_the_one_the_filter_cuts_at():
    from postdesk.filter.body import new_text

    assert new_text(f"My answer\n\n{REPLY_MARKER}\n\nYour ticket ...") == "My answer"
