"""Test helpers that ship with postdesk: servers the tests, bench/ and the demo start on loopback."""
