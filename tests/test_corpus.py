"""The mail corpus: every tests/data/mail/*.eml against its expected result.

Each ``NAME.eml`` has a ``NAME.json`` beside it::

    {"envelope": {"sender", "recipients", "client_address", "sasl_username"},
     "known": {"tickets": [{"number", "status", "requester", "participants",
                            "closed_at" (ISO, optional), "merged_into" (optional)}],
               "message_ids": {"<id without <>>": ticket}, "seen": ["<message key>"]},
     "expect": {...}}

Only the keys present in "expect" are checked, so a file states exactly what
it is about.  "flags" is compared as an exact set, "cc" and "references" as
sets; "kind" is the Kind value; any other Decision field is compared as is.
Extra keys: "text_contains"/"text_excludes", "new_text_contains"/
"new_text_excludes", "html_contains"/"html_excludes" (the sanitised HTML), "subject_contains" (lists of substrings),
"reason_contains", "attachment_count", and "attachments" (a list in message
order; each item may give filename, filename_endswith, content_type, size,
sha256, data_startswith, content_id, inline).  A new bug in the field adds a
file here, not a new test function.

Two conveniences keep the fixtures honest without hard-coding secrets or
hashes: ``{{msgid:N}}`` in an .eml is replaced by our own HMAC Message-ID for
ticket N (postdesk.msgid, secret ``b"test-secret"``), as our notifier would
have sent it; an expected "message_key" of ``"sha256:raw"`` means the
sha256 of the (substituted) raw bytes.

Besides the expectations, every mail is run through a few other envelopes
(trusted staff, null sender, no system recipient, empty store) to check the
invariants the rest of postdesk relies on: parse and decide never raise, and
decoded header values and attachment names are safe to put in a new mail or
a file system path.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from filter_support import MemoryKnown, ticket_info

from postdesk.auth.result import UNCHECKED, AuthResult
from postdesk.filter.decision import Decision, Envelope, Kind

MAIL_DIR = Path(__file__).parent / "data" / "mail"
MAILS = sorted(MAIL_DIR.glob("*.eml"))
SECRET = b"test-secret"
NOW = datetime(2026, 11, 28, 0, 30, 0)
MSGID_TEMPLATE = re.compile(rb"\{\{msgid:(\d+)\}\}")


def corpus_known(block: dict | None = None, made: dict[int, list[str]] | None = None) -> MemoryKnown:
    """The filter's read-only view of the store, built from a JSON "known" block.

    ``"sent_to": {"N": "address"}`` says our mails about ticket N (every
    ``{{msgid:N}}`` of the .eml, listed in ``made``) went to that address."""
    block = block or {}
    tickets = [
        replace(
            ticket_info(int(t["number"]), t["requester"], t.get("participants", ()), t.get("status", "open")),
            closed_at=datetime.fromisoformat(t["closed_at"]) if t.get("closed_at") else None,
            merged_into=t.get("merged_into"),
        )
        for t in block.get("tickets", [])
    ]
    sent = {
        mid: (address, int(number))
        for number, address in block.get("sent_to", {}).items()
        for mid in (made or {}).get(int(number), [])
    }
    return MemoryKnown(tickets, {k: int(v) for k, v in block.get("message_ids", {}).items()}, block.get("seen", []), SECRET, sent)


def _load(eml: Path) -> tuple[bytes, dict]:
    spec_path = eml.with_suffix(".json")
    assert spec_path.exists(), f"{eml.name} has no expected-result file {spec_path.name}"
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    raw = eml.read_bytes()
    made: dict[int, list[str]] = {}
    if MSGID_TEMPLATE.search(raw):
        from postdesk.msgid import make_message_id

        def ours(m: re.Match) -> bytes:
            number = int(m.group(1))
            mid = make_message_id(number, SECRET, "example.com")
            made.setdefault(number, []).append(mid)
            return mid.encode()

        raw = MSGID_TEMPLATE.sub(ours, raw)
    spec["_made"] = made
    return raw, spec


def _auth(block: dict | None) -> AuthResult:
    """An "auth" block: AuthResult fields, e.g. {"spf": "fail", "source": "local"}."""
    if not block:
        return UNCHECKED
    block = dict(block)
    if "dkim_domains" in block:
        block["dkim_domains"] = tuple(block["dkim_domains"])
    return AuthResult(**block)


def _envelope(block: dict) -> Envelope:
    return Envelope(
        sender=block.get("sender", ""),
        recipients=tuple(block.get("recipients", [])),
        queue_id=block.get("queue_id", "4BxT2k1Z3n"),
        client_address=block.get("client_address", ""),
        sasl_username=block.get("sasl_username", ""),
    )


def _run(raw: bytes, envelope: Envelope, known: MemoryKnown, config, auth: AuthResult = UNCHECKED) -> Decision:
    from postdesk import filter as pdfilter

    parsed = pdfilter.parse(raw)
    decision = pdfilter.decide(parsed, envelope, known, config, NOW, auth=auth)
    assert isinstance(decision, Decision)
    return decision


def test_corpus_is_complete():
    """Every .eml has its .json and vice versa, and the corpus is not a token one."""
    jsons = {p.stem for p in MAIL_DIR.glob("*.json")}
    emls = {p.stem for p in MAILS}
    assert emls == jsons, f"unpaired: {sorted(emls ^ jsons)}"
    assert len(emls) >= 45
    for path in MAIL_DIR.glob("*.json"):
        spec = json.loads(path.read_text(encoding="utf-8"))
        assert set(spec) <= {"envelope", "known", "expect", "comment", "auth", "config"}, path.name
        assert spec.get("expect", {}).get("kind") in {k.value for k in Kind}, f"{path.name}: expect.kind"


@pytest.mark.parametrize("eml", MAILS, ids=[p.stem for p in MAILS])
def test_mail(eml: Path, make_config):
    raw, spec = _load(eml)
    known = corpus_known(spec.get("known"), spec["_made"])
    config = make_config(**spec.get("config", {}))
    d = _run(raw, _envelope(spec["envelope"]), known, config, _auth(spec.get("auth")))
    expect = spec["expect"]
    problems: list[str] = []

    def check(name: str, got, want) -> None:
        if got != want:
            problems.append(f"{name}: got {got!r}, expected {want!r}")

    for key, want in expect.items():
        if key == "kind":
            check(key, d.kind.value, want)
        elif key == "flags":
            check(key, sorted(d.flags), sorted(want))
        elif key == "refused":
            check(key, list(d.refused), want)
        elif key in ("cc", "references"):
            # compared as sets: order and repeats (In-Reply-To is usually also in References) don't matter
            check(key, sorted(set(getattr(d, key))), sorted({x.lower() if key == "cc" else x for x in want}))
        elif key == "message_key" and want == "sha256:raw":
            check(key, d.message_key, "sha256:" + hashlib.sha256(raw).hexdigest())
        elif key in ("text_contains", "new_text_contains", "html_contains"):
            field = key.removesuffix("_contains")
            for s in want:
                if s not in getattr(d, field):
                    problems.append(f"{field} lacks {s!r}: {getattr(d, field)[:600]!r}")
        elif key in ("text_excludes", "new_text_excludes", "html_excludes"):
            field = key.removesuffix("_excludes")
            for s in want:
                if s in getattr(d, field):
                    problems.append(f"{field} has {s!r}: {getattr(d, field)[:600]!r}")
        elif key == "subject_contains":
            for s in want:
                if s not in d.subject:
                    problems.append(f"subject lacks {s!r}: {d.subject!r}")
        elif key == "reason_contains":
            if want.lower() not in d.reason.lower():
                problems.append(f"reason {d.reason!r} lacks {want!r}")
        elif key == "attachment_count":
            check(key, len(d.attachments), want)
        elif key == "attachments":
            got = list(d.attachments)
            if len(got) != len(want):
                problems.append(
                    f"attachments: got {[(a.filename, a.content_type, len(a.data)) for a in got]}, expected {want}"
                )
                continue
            for i, (a, w) in enumerate(zip(got, want)):
                for wk, wv in w.items():
                    if wk == "size":
                        check(f"attachments[{i}].size", len(a.data), wv)
                    elif wk == "sha256":
                        check(f"attachments[{i}].sha256", hashlib.sha256(a.data).hexdigest(), wv)
                    elif wk == "filename_endswith":
                        if not a.filename.endswith(wv):
                            problems.append(f"attachments[{i}].filename {a.filename!r} does not end with {wv!r}")
                    elif wk == "data_startswith":
                        if not a.data.startswith(wv.encode("latin-1")):
                            problems.append(f"attachments[{i}].data starts {a.data[:40]!r}, expected {wv!r}")
                    else:
                        check(f"attachments[{i}].{wk}", getattr(a, wk), wv)
        else:
            check(key, getattr(d, key), want)

    assert not problems, f"{eml.name}:\n  " + "\n  ".join(problems)


# Envelopes every mail is also run through, for the invariants only.
OTHER_ENVELOPES = {
    "staff-sasl": Envelope("bob@example.com", ("support@example.com",), client_address="203.0.113.50", sasl_username="bob@example.com"),
    "trusted-net": Envelope("bob@example.com", ("support@example.com",), client_address="127.0.0.1"),
    "null-sender": Envelope("", ("support@example.com",), client_address="198.51.100.25"),
    "no-system-rcpt": Envelope("bob@example.com", ("alice@customer.example",), client_address="::1", sasl_username="bob@example.com"),
    "many-rcpts": Envelope("x@customer.example", ("help@example.com", "Support@Example.COM", "team@example.com")),
}

BAD_HEADER_CHARS = ("\r", "\n", "\x00")


def _assert_safe(d: Decision, where: str) -> None:
    for name in ("subject", "author_name", "original_subject", "author"):
        value = getattr(d, name)
        assert isinstance(value, str), f"{where}: {name} is {type(value).__name__}"
        for c in BAD_HEADER_CHARS:
            assert c not in value, f"{where}: {name} contains {c!r}: {value!r}"
    for a in d.attachments:
        assert isinstance(a.data, bytes), f"{where}: attachment data is {type(a.data).__name__}"
        for c in ("/", "\\", "\x00"):
            assert c not in a.filename, f"{where}: attachment filename contains {c!r}: {a.filename!r}"
        assert a.filename not in (".", ".."), f"{where}: attachment filename {a.filename!r}"
    for addr in d.cc:
        for c in BAD_HEADER_CHARS:
            assert c not in addr, f"{where}: cc address contains {c!r}: {addr!r}"
    if d.kind in (Kind.FOLLOWUP,):
        assert d.ticket is not None, f"{where}: FOLLOWUP without a ticket"
    if d.close:
        assert d.staff, f"{where}: close requested by someone who is not trusted staff"


@pytest.mark.parametrize("eml", MAILS, ids=[p.stem for p in MAILS])
def test_invariants(eml: Path, config):
    """parse and decide never raise; header values and filenames are safe."""
    from postdesk import filter as pdfilter

    raw, spec = _load(eml)
    parsed = pdfilter.parse(raw)  # must not raise, whatever the bytes
    envelopes = {"own": _envelope(spec["envelope"]), **OTHER_ENVELOPES}
    for known_name, known_block in (("own", spec.get("known")), ("empty", None)):
        for env_name, envelope in envelopes.items():
            where = f"{eml.name} envelope={env_name} known={known_name}"
            d = pdfilter.decide(parsed, envelope, corpus_known(known_block, spec["_made"]), config, NOW)
            assert isinstance(d, Decision), where
            _assert_safe(d, where)


@pytest.mark.parametrize("eml", MAILS, ids=[p.stem for p in MAILS])
def test_truncated_input_never_raises(eml: Path, config):
    """A message cut off anywhere (a dropped connection, a size limit) still parses and decides."""
    from postdesk import filter as pdfilter

    raw, spec = _load(eml)
    envelope = _envelope(spec["envelope"])
    for cut in sorted({len(raw) // 7, len(raw) // 3, len(raw) // 2, len(raw) - 3}):
        d = pdfilter.decide(pdfilter.parse(raw[:cut]), envelope, corpus_known(spec.get("known"), spec["_made"]), config, NOW)
        _assert_safe(d, f"{eml.name} cut at {cut}")
