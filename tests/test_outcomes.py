"""The one outcome table (``postdesk.outcomes``): its SMTP reply codes,
RFC 3463 enhanced status codes and pipe(8) exit statuses agree with each
other, and with what README.md and docs/postfix.md tell the admin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postdesk import outcomes
from postdesk.outcomes import ANSWERS, EX_TEMPFAIL, FAILURE, MISROUTED, SHUTDOWN, TOO_BIG, Answer, Outcome

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "postfix.md"]
# "451 4.3.0", "552 5.3.4": an SMTP reply code followed by an enhanced status code.
REPLY = re.compile(r"\b([245]\d\d) ([245]\.\d{1,3}\.\d{1,3})\b")
# sysexits(3): EX__BASE 64 .. EX__MAX 78.
SYSEXITS = range(64, 79)

ALL = {**{o.name: a for o, a in ANSWERS.items()}, "FAILURE": FAILURE, "TOO_BIG": TOO_BIG, "MISROUTED": MISROUTED, "SHUTDOWN": SHUTDOWN}


def test_every_outcome_has_an_answer():
    assert set(ANSWERS) == set(Outcome)


@pytest.mark.parametrize("name", sorted(ALL))
def test_codes_agree_with_each_other(name):
    a: Answer = ALL[name]
    klass = a.smtp_code[:1] or "2"  # no code: the MTA answers its own 250
    assert a.dsn.split(".")[0] == klass, f"{name}: SMTP {a.smtp_code or '2xx'} but DSN {a.dsn}"
    assert {"2": "accept", "4": "tempfail", "5": "reject"}[klass] == a.milter, name
    if klass == "2":
        assert a.smtp_code == "" and a.exit_code == 0, name
    elif klass == "4":
        assert a.exit_code == EX_TEMPFAIL, f"{name}: a temporary refusal must exit 75 so pipe(8) defers"
    else:
        assert a.exit_code in SYSEXITS and a.exit_code != EX_TEMPFAIL, f"{name}: a permanent refusal must bounce: a sysexits code other than 75"
    assert a.exit_code != 1, name


def _documented() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in DOCS:
        found |= set(REPLY.findall(path.read_text(encoding="utf-8")))
    return found


def test_the_docs_name_only_replies_the_table_gives():
    # postdesk lmtp says its own 250 (the milter leaves it to the MTA).
    table = {(a.smtp_code, a.dsn) for a in ALL.values() if a.smtp_code} | {(a.lmtp_code, a.dsn) for a in ALL.values()}
    documented = _documented()
    assert documented, "no SMTP replies found in the docs: did the wording change?"
    assert documented <= table, f"documented but not in postdesk.outcomes: {sorted(documented - table)}"


def test_the_replies_an_admin_meets_are_documented():
    """Store failure, the new-ticket rate and the size limit: each in the docs as the table says."""
    documented = _documented()
    for a in (FAILURE, ANSWERS[Outcome.DEFERRED], TOO_BIG):
        assert (a.smtp_code, a.dsn) in documented, f"{a.smtp_code} {a.dsn} is not in README.md or docs/postfix.md"


def test_the_milter_and_pipe_comparison_matches_the_table():
    """docs/postfix.md's "database down" row: the milter's reply and the pipe's exit."""
    text = (ROOT / "docs" / "postfix.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| database down"))
    assert REPLY.search(row).groups() == (FAILURE.smtp_code, FAILURE.dsn), row
    assert re.search(r"exit (\d+)", row).group(1) == str(FAILURE.exit_code), row


def test_the_size_limit_help_names_the_too_big_reply():
    from postdesk.config import SCHEMA

    help_text = SCHEMA["limits"]["max_message_bytes"][2]
    assert f"{TOO_BIG.smtp_code} {TOO_BIG.dsn}" in help_text


def test_too_big_reason_names_the_limit():
    assert "2048 bytes" in outcomes.too_big_reason(2048) and "4096 bytes" in outcomes.too_big_reason(2048, 4096)


@pytest.mark.parametrize("name", sorted(ALL))
def test_lmtp_code_agrees(name):
    """postdesk lmtp answers each recipient itself: 250 where the milter accepts, the SMTP code otherwise."""
    a: Answer = ALL[name]
    assert a.lmtp_code == ("250" if a.milter == "accept" else a.smtp_code)
    assert a.lmtp_reply("x\r\ny %").startswith(f"{a.lmtp_code} {a.dsn} x y percent")


def test_an_answer_built_elsewhere_still_constructs():
    """Answer gained no field: four positional arguments, as every caller writes it."""
    assert Answer("accept", "", "2.0.0", 0).lmtp_code == "250"
