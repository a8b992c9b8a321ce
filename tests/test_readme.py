"""The README's configuration table is the config schema: keep them in step."""

from __future__ import annotations

import json
import re
from pathlib import Path

from postdesk.config import SCHEMA

README = Path(__file__).resolve().parent.parent / "README.md"


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, str, dict)):
        return json.dumps(value)
    return str(value)


def _readme_table() -> dict[tuple[str, str], str]:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- config-table", 1)[1].split("<!-- end config-table -->", 1)[0]
    rows, section = {}, None
    for line in block.splitlines():
        m = re.fullmatch(r"`\[(\w+)\]`", line.strip())
        if m:
            section = m.group(1)
            continue
        m = re.fullmatch(r"\| `(\w+)` \| `(.*)` \| .* \|", line.strip())
        if m and section:
            rows[(section, m.group(1))] = m.group(2)
    return rows


def test_every_key_is_documented_with_its_default():
    table = _readme_table()
    expected = {(s, k): _fmt(d) for s, keys in SCHEMA.items() for k, (d, _c, _h) in keys.items()}
    assert table == expected


def test_readme_names_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
