"""Benchmark: how much of the mail corpus postdesk decodes right, against
Python's ``email`` with ``policy.default`` alone, in one run.

    .venv/bin/python bench/decoding.py [--verbose]

Over tests/data/mail/*.eml, with each file's expected result (.json):

- subjects (files whose "expect" names a subject): right when the decoded
  Subject holds the expected one (whitespace-normalised) and no U+FFFD, no
  leftover encoded-word, no control character.  postdesk: the Decision's
  ``original_subject``; stdlib: ``str(msg["subject"])``.
- attachments (each expected attachment): right when the one at the same
  position has the expected filename (names postdesk makes up, like
  "attachment-2.bin", are not checked), content type, size, sha256 and
  first bytes.  stdlib: every leaf part that has a filename or says
  ``attachment``, and every message/rfc822 part, with
  ``get_payload(decode=True)`` (an attached message as ``as_bytes()``).
- bodies (files with "text_contains"): right when the text holds every
  expected string and none of "text_excludes".  stdlib:
  ``msg.get_body(("plain", "html")).get_content()``.

Prints the counts and the ratio; ``--verbose`` names every miss.  The
stdlib side is what a program built on the standard library alone gets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_corpus import MAILS, _auth, _envelope, _load, corpus_known  # noqa: E402

from postdesk import config as configmod  # noqa: E402
from postdesk.filter import decide, parse  # noqa: E402
from postdesk.filter.decision import Decision  # noqa: E402
from tests.conftest import BASE_CONFIG  # noqa: E402

NOW = __import__("datetime").datetime(2026, 11, 28, 0, 30, 0)
_WS = re.compile(r"\s+")
_BAD = re.compile(r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|=\?[^?\s]+\?[bBqQ]\?")
_TAG = re.compile(r"\s*\[#\d+\]\s*")
MADE_UP_NAME = re.compile(r"^attachment-\d+\.")


def _norm(s: str) -> str:
    return _WS.sub(" ", s).strip()


def subject_right(got: str, expect: dict) -> bool | None:
    wanted = [expect[k] for k in ("subject", "original_subject") if k in expect] + list(expect.get("subject_contains", []))
    if not wanted:
        return None
    got = _norm(_TAG.sub(" ", got))  # our own "[#1042]" is taken out of the expected subject
    return not _BAD.search(got) and all(_norm(_TAG.sub(" ", w)) in got for w in wanted if w)


def body_right(text: str, expect: dict) -> bool | None:
    if "text_contains" not in expect:
        return None
    return all(s in text for s in expect["text_contains"]) and not any(s in text for s in expect.get("text_excludes", []))


def attachments_right(got: list[tuple[str, str, bytes]], expect: dict) -> list[bool]:
    out = []
    for i, want in enumerate(expect.get("attachments", [])):
        if i >= len(got):
            out.append(False)
            continue
        name, ctype, data = got[i]
        ok = True
        if "filename" in want and not MADE_UP_NAME.match(want["filename"]):
            ok &= name == want["filename"]
        if "filename_endswith" in want:
            ok &= name.endswith(want["filename_endswith"])
        if "content_type" in want:
            ok &= ctype == want["content_type"]
        if "size" in want:
            ok &= len(data) == want["size"]
        if "sha256" in want:
            ok &= hashlib.sha256(data).hexdigest() == want["sha256"]
        if "data_startswith" in want:
            ok &= data.startswith(want["data_startswith"].encode("latin-1"))
        out.append(bool(ok))
    return out


# -- the standard library alone ------------------------------------------------


def _std_leaves(part: Message, depth: int = 0):
    ctype = part.get_content_type()
    if ctype.startswith("message/") and ctype in ("message/rfc822", "message/global"):
        yield part
        return
    if part.is_multipart() and depth < 50:
        for child in part.get_payload():
            yield from _std_leaves(child, depth + 1)
        return
    yield part


def stdlib(raw: bytes) -> tuple[str, list[tuple[str, str, bytes]], str]:
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception:
        return "", [], ""
    assert isinstance(msg, EmailMessage)
    try:
        subject = str(msg["subject"] or "")
    except Exception:
        subject = ""
    attachments = []
    try:
        for part in _std_leaves(msg):
            ctype = part.get_content_type()
            try:
                name = part.get_filename() or ""
            except Exception:
                name = ""
            if ctype in ("message/rfc822", "message/global"):
                inner = part.get_payload()
                data = inner[0].as_bytes() if isinstance(inner, list) and inner else b""
            elif name or part.get_content_disposition() == "attachment":
                data = part.get_payload(decode=True) or b""
            else:
                continue
            attachments.append((name, ctype, data))
    except Exception:
        pass
    text = ""
    try:
        body = msg.get_body(("plain", "html"))
        if body is not None:
            text = body.get_content()
    except Exception:
        pass
    return subject, attachments, text


# -- postdesk ------------------------------------------------------------------


def postdesk(raw: bytes, spec: dict, config) -> Decision:
    known = corpus_known(spec.get("known"), spec["_made"])
    return decide(parse(raw), _envelope(spec["envelope"]), known, config, NOW, auth=_auth(spec.get("auth")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verbose", action="store_true", help="name every miss")
    args = ap.parse_args()
    tally = {k: {"postdesk": 0, "stdlib": 0, "total": 0} for k in ("subjects", "attachments", "bodies")}
    misses: list[str] = []
    for eml in MAILS:
        raw, spec = _load(eml)
        expect = spec["expect"]
        base = json.loads(json.dumps(BASE_CONFIG))
        for section, values in spec.get("config", {}).items():
            base.setdefault(section, {}).update(values)
        base["store"] = {"url": "sqlite:////nonexistent/bench.db", "attachments": "/nonexistent"}
        config = configmod.from_dict(base, source="<bench>")
        d = postdesk(raw, spec, config)
        s_subject, s_attachments, s_text = stdlib(raw)
        ours = [(a.filename, a.content_type, a.data) for a in d.attachments]
        checks = {
            "subjects": ([subject_right(d.original_subject, expect)], [subject_right(s_subject, expect)]),
            "attachments": (attachments_right(ours, expect), attachments_right(s_attachments, expect)),
            "bodies": ([body_right(d.text, expect)], [body_right(s_text, expect)]),
        }
        for what, (pd, sd) in checks.items():
            for p_ok, s_ok in zip(pd, sd):
                if p_ok is None:
                    continue
                tally[what]["total"] += 1
                tally[what]["postdesk"] += bool(p_ok)
                tally[what]["stdlib"] += bool(s_ok)
                if not p_ok or not s_ok:
                    misses.append(f"{eml.stem}: {what}: postdesk {'ok' if p_ok else 'WRONG'}, stdlib {'ok' if s_ok else 'WRONG'}")
    print(f"corpus: {len(MAILS)} mails in {MAIL_DIR_NAME}")
    print(f"{'':12} {'postdesk':>10} {'stdlib':>10} {'of':>5}")
    for what, t in tally.items():
        print(f"{what:12} {t['postdesk']:>10} {t['stdlib']:>10} {t['total']:>5}")
    if args.verbose:
        print("\n".join(misses))
    return 0


MAIL_DIR_NAME = "tests/data/mail"

if __name__ == "__main__":
    sys.exit(main())
