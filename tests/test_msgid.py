"""Our Message-IDs: the HMAC token names the ticket and cannot be forged."""

from __future__ import annotations

import pytest

from postdesk.msgid import make_message_id, ticket_from_message_id

SECRET = b"k" * 32


def test_round_trip():
    mid = make_message_id(1042, SECRET, "example.com")
    assert mid.startswith("pd.1042.") and mid.endswith("@example.com")
    assert "<" not in mid and ">" not in mid and " " not in mid
    assert ticket_from_message_id(mid, SECRET) == 1042
    assert ticket_from_message_id(f"<{mid}>", SECRET) == 1042  # as it appears in References


def test_ids_are_unique():
    assert len({make_message_id(7, SECRET, "example.com") for _ in range(200)}) == 200


def test_wrong_secret_or_tampered_number_fails():
    mid = make_message_id(1042, SECRET, "example.com")
    assert ticket_from_message_id(mid, b"other secret") is None
    forged = mid.replace("pd.1042.", "pd.1043.", 1)
    assert ticket_from_message_id(forged, SECRET) is None
    local, _, domain = mid.partition("@")
    flipped = local[:-1] + ("0" if local[-1] != "0" else "1") + "@" + domain
    assert ticket_from_message_id(flipped, SECRET) is None


def test_domain_is_not_part_of_the_proof_but_needed():
    mid = make_message_id(5, SECRET, "example.com")
    assert ticket_from_message_id(mid.replace("@example.com", "@relay.example.net"), SECRET) == 5
    assert ticket_from_message_id(mid.split("@")[0], SECRET) is None


@pytest.mark.parametrize(
    "value",
    ["", "abc@example.com", "pd.x.y.z@example.com", "pd.1.00000000.zzzzzzzzzz@e", "pd.99999999999.aaaaaaaa.aaaaaaaaaa@e", None, 42],
)
def test_garbage_is_none(value):
    assert ticket_from_message_id(value, SECRET) is None


def test_empty_secret():
    with pytest.raises(ValueError):
        make_message_id(1, b"", "example.com")
    assert ticket_from_message_id(make_message_id(1, SECRET, "e.com"), b"") is None


def test_bad_domain():
    with pytest.raises(ValueError):
        make_message_id(1, SECRET, "exa mple.com")
