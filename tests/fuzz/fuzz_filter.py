"""Fuzz parse() and decide(): N executions, then the number of crashes.

    .venv/bin/python tests/fuzz/fuzz_filter.py [--runs 100000] [--engine atheris|hypothesis]

A crash is parse or decide raising, or a Decision breaking the invariants
the rest of postdesk relies on (``filter_strategies.check``: clean header
values, only existing tickets, only staff close, forged mail silent, acks to
real addresses).  Each is written to ``--crashes DIR`` (default
``fuzz-crashes/``) as the input bytes and the traceback, and counted; the
run goes on.

- ``atheris`` (default when installed): coverage-guided (libFuzzer), seeded
  with the corpus tests/data/mail/*.eml; the input's first bytes choose the
  envelope and the authentication verdict, the rest is the message.
- ``hypothesis``: the structured generators of tests/filter_strategies.py.

Exit status 0 when nothing crashed, 1 otherwise.  Runs outside the normal
suite (tests/test_filter_properties.py is the bounded version).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]

from filter_strategies import CONFIG, KNOWN, NOW, check  # noqa: E402

from postdesk.auth.result import UNCHECKED, AuthResult  # noqa: E402
from postdesk.filter.decision import Envelope  # noqa: E402

ENVELOPES = [
    Envelope("c@cust.org", ("support@example.com",), client_address="203.0.113.9"),
    Envelope("", ("support@example.com",), client_address="198.51.100.25"),
    Envelope("alice@example.com", ("support@example.com",), client_address="127.0.0.1"),
    Envelope("alice@example.com", ("c@cust.org",), client_address="203.0.113.9", sasl_username="alice@example.com"),
    Envelope("bounces+x@mail.cust.org", ("help@example.com", "team@example.com"), client_address="203.0.113.9"),
]
AUTHS = [
    UNCHECKED,
    AuthResult(spf="fail", dmarc="fail", source="local"),
    AuthResult(dmarc="pass", dkim="pass", dkim_aligned=True, source="local"),
    AuthResult(spf="temperror", source="local"),
    AuthResult(envelope_aligned=False, source="local"),
]


class Counter:
    def __init__(self, out: Path) -> None:
        self.runs = 0
        self.crashes = 0
        self.out = out
        self.started = time.monotonic()

    def one(self, raw: bytes, env: Envelope, auth: AuthResult) -> None:
        from postdesk.filter import decide, parse

        self.runs += 1
        try:
            check(decide(parse(raw), env, KNOWN, CONFIG, NOW, auth=auth))
        except Exception:
            self.crashes += 1
            self.out.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256(raw).hexdigest()[:16]
            (self.out / f"{name}.eml").write_bytes(raw)
            (self.out / f"{name}.txt").write_text(f"{env}\n{auth}\n\n{traceback.format_exc()}", encoding="utf-8")

    def report(self, engine: str) -> None:
        took = time.monotonic() - self.started
        print(f"fuzz ({engine}): {self.runs} executions, {self.crashes} crashes, {took:.0f} s ({self.runs / max(took, 1e-9):.0f}/s)", flush=True)


def run_atheris(runs: int, counter: Counter) -> None:
    import os

    import atheris

    import postdesk.filter  # noqa: F401
    import postdesk.filter.rules  # noqa: F401

    # Everything is imported by now (postdesk, email, flufl.bounce):
    # instrument it all for coverage feedback.
    atheris.instrument_all()

    def one_input(data: bytes) -> None:
        if len(data) < 2:
            counter.one(data, ENVELOPES[0], UNCHECKED)
        else:
            counter.one(data[2:], ENVELOPES[data[0] % len(ENVELOPES)], AUTHS[data[1] % len(AUTHS)])
        if counter.runs >= runs:
            # libFuzzer ends the process with exit(), past Python's atexit: report here.
            counter.report("atheris")
            os._exit(1 if counter.crashes else 0)

    seeds = Path(tempfile.mkdtemp(prefix="postdesk-fuzz-"))
    for eml in sorted((TESTS / "data" / "mail").glob("*.eml")):
        (seeds / eml.name).write_bytes(b"\x00\x00" + eml.read_bytes())
    atexit.register(shutil.rmtree, seeds, True)
    # -max_len: large enough for the corpus' 100 KB header; libFuzzer mutates the seeds.
    atheris.Setup([sys.argv[0], f"-runs={runs * 2}", "-max_len=131072", "-rss_limit_mb=4096", str(seeds)], one_input)
    try:
        atheris.Fuzz()
    finally:
        shutil.rmtree(seeds, True)


def run_hypothesis(runs: int, counter: Counter) -> None:
    from filter_strategies import auth_result, envelope, raw_mail
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=runs, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(raw_mail(), envelope, auth_result)
    def one(raw, env, auth):
        counter.one(raw, env, auth)

    one()
    counter.report("hypothesis")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--engine", choices=("atheris", "hypothesis"), default=None)
    ap.add_argument("--crashes", default="fuzz-crashes")
    args = ap.parse_args()
    engine = args.engine
    if engine is None:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    counter = Counter(Path(args.crashes))
    if engine == "atheris":
        run_atheris(args.runs, counter)  # ends the process itself after --runs executions
        return 0
    run_hypothesis(args.runs, counter)
    return 1 if counter.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
