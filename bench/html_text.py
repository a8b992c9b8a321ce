"""Which HTML-to-text converter: postdesk's own against inscriptis and
html2text (PyPI), on the corpus's HTML mails, in one run.

    .venv/bin/python bench/html_text.py [--verbose]

For every corpus mail that has an HTML part and states what its text or new
text must (not) contain, the filter is run once per converter (the converter
swapped into ``postdesk.filter.body``); a mail counts as right when every
expectation of tests/data/mail/NAME.json about ``text`` and ``new_text``
holds.  The new text matters most: it is what staff and customers see of a
reply, and it depends on the converter marking quoted history (``>``) the
way the quote stripper reads it.  Speed is in bench/sanitise.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_corpus import MAILS, _auth, _envelope, _load, corpus_known  # noqa: E402

from postdesk import config as configmod  # noqa: E402
from postdesk.filter import body as bodymod  # noqa: E402
from postdesk.filter import decide, htmlbody, parse  # noqa: E402
from postdesk.filter.html2text import html_to_text  # noqa: E402
from tests.conftest import BASE_CONFIG  # noqa: E402

NOW = __import__("datetime").datetime(2026, 11, 28, 0, 30, 0)
KEYS = ("text_contains", "text_excludes", "new_text_contains", "new_text_excludes")


def converters() -> dict[str, Callable[[str], str]]:
    out: dict[str, Callable[[str], str]] = {"postdesk": html_to_text}
    try:
        from inscriptis import get_text

        out["inscriptis"] = get_text
    except ImportError:
        pass
    try:
        import html2text

        def h2t(html: str) -> str:
            conv = html2text.HTML2Text()
            conv.body_width = 0  # no hard wrapping: the text is stored, not printed
            conv.ignore_images = True
            return conv.handle(html)

        out["html2text"] = h2t
    except ImportError:
        pass
    return out


def right(d, expect: dict) -> list[str]:
    problems = []
    for key in KEYS:
        field = "new_text" if key.startswith("new_text") else "text"
        for s in expect.get(key, []):
            present = s in getattr(d, field)
            if key.endswith("_contains") and not present:
                problems.append(f"{field} lacks {s!r}")
            if key.endswith("_excludes") and present:
                problems.append(f"{field} has {s!r}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    base = json.loads(json.dumps(BASE_CONFIG))
    base["store"] = {"url": "sqlite:////nonexistent/bench.db", "attachments": "/nonexistent"}
    config = configmod.from_dict(base, source="<bench>")
    mails = []
    for eml in MAILS:
        raw, spec = _load(eml)
        if any(k in spec["expect"] for k in KEYS) and htmlbody.extract(parse(raw).message):
            mails.append((eml.stem, raw, spec))
    original = bodymod.html_to_text
    print(f"{len(mails)} corpus mails with HTML and text expectations")
    try:
        for name, convert in converters().items():
            bodymod.html_to_text = convert  # type: ignore[assignment]
            ok = 0
            notes = []
            for stem, raw, spec in mails:
                d = decide(parse(raw), _envelope(spec["envelope"]), corpus_known(spec.get("known"), spec["_made"]), config, NOW, auth=_auth(spec.get("auth")))
                problems = right(d, spec["expect"])
                ok += not problems
                notes += [f"  {stem}: {p}" for p in problems]
            print(f"{name:12} {ok:3} of {len(mails)} right")
            if args.verbose:
                print("\n".join(notes))
    finally:
        bodymod.html_to_text = original
    return 0


if __name__ == "__main__":
    sys.exit(main())
