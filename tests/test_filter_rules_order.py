"""The declared order of rules/__init__.py is the order docs/filter.md lists,
each with its file."""

from __future__ import annotations

import re
from pathlib import Path

from postdesk.filter.rules import RULES

DOC = Path(__file__).parent.parent / "docs" / "filter.md"


def test_docs_list_the_rules_in_the_declared_order_with_their_files():
    listed = re.findall(r"^\d+\. \*\*[^*]+\*\* \(`rules/(\w+)\.py`", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    assert listed == [name for name, _rule in RULES]


def test_every_rule_module_is_in_the_order():
    files = {p.stem for p in (Path(__file__).parent.parent / "postdesk" / "filter" / "rules").glob("*.py")} - {"__init__"}
    assert files == {name for name, _rule in RULES}
