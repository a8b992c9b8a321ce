"""Sender authentication: who really wrote a message (SPF, DKIM, DMARC).

``AuthResult`` (``result.py``) is the verdict the filter reads; it is
computed before the store's transaction (DNS never runs while a database
lock is held) and recorded on the action.
"""

from __future__ import annotations

from postdesk.auth.result import UNCHECKED, AuthResult


def authenticate(parsed, raw: bytes, envelope, config) -> AuthResult:
    """The verdict for one message (called by ``postdesk.ingest`` before the
    store's transaction).  Not yet checked here: every message is UNCHECKED."""
    return UNCHECKED


__all__ = ["AuthResult", "UNCHECKED", "authenticate"]
