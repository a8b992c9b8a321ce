"""Rewrite README's configuration table from ``postdesk.config.SCHEMA``.

``python scripts/readme_config.py`` after adding or changing a key;
tests/test_readme.py fails until README and the schema agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from postdesk.config import SCHEMA  # noqa: E402

START = "<!-- config-table: generated from postdesk/config.py SCHEMA; tests/test_readme.py keeps them in step -->"
END = "<!-- end config-table -->"


def fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, str, dict)):
        return json.dumps(value)
    return str(value)


def table() -> str:
    out = [START, ""]
    for section, keys in SCHEMA.items():
        out += [f"`[{section}]`", "", "| key | default | meaning |", "|---|---|---|"]
        for key, (default, _check, help_text) in keys.items():
            out.append(f"| `{key}` | `{fmt(default)}` | {help_text} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def main() -> int:
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    readme.write_text(head + table() + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
