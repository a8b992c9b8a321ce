"""Properties of parse() and decide() over generated mail (hypothesis).

Whatever the bytes: parse and decide never raise; decoded header values
carry no CR, LF or NUL; a Decision names only a ticket that exists; only
proven staff close tickets; forged mail is never public, acknowledged or
alerted; an acknowledgement goes to an address, never to our own.  The
example count is bounded so this runs in the normal suite; the long run is
tests/fuzz/fuzz_filter.py.
"""

from __future__ import annotations

from filter_strategies import BAD, CONFIG, KNOWN, NOW, auth_result, check, envelope, raw_mail  # noqa: F401 (CONFIG, KNOWN: what check() uses)
from hypothesis import HealthCheck, given, settings

from postdesk.filter import decide, parse

PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@PROFILE
@given(raw_mail())
def test_parse_never_raises_and_headers_are_clean(raw):
    p = parse(raw)
    assert p.size == len(raw)
    for name in ("subject", "from", "to", "message-id", "content-type"):
        value = p.header(name)
        assert not any(c in value for c in BAD), (name, value)


@PROFILE
@given(raw_mail(), envelope, auth_result)
def test_decide_never_raises_and_keeps_its_invariants(raw, env, auth):
    check(decide(parse(raw), env, KNOWN, CONFIG, NOW, auth=auth))
