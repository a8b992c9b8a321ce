"""Text as the databases accept it, and the stored form of Message-ID keys."""

from __future__ import annotations

import hashlib

KEY_MAX = 998  # RFC 5322 line limit; the width of the Message-ID columns


def clean(value: str | None, limit: int | None = None) -> str:
    """No NUL (PostgreSQL refuses it in text), no lone surrogates (undecodable
    8-bit header bytes arrive surrogate-escaped), clipped to the column."""
    if not value:
        return ""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return value


def message_key(key: str) -> str:
    """A Message-ID key as stored: without <>, hashed when it would not fit
    the column (lookups use the same mapping, so they still match)."""
    key = clean((key or "").strip().strip("<>"))
    if len(key) > KEY_MAX:
        return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return key
