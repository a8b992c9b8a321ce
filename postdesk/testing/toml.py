"""A tiny TOML writer for postdesk configuration files written by tests.

The standard library reads TOML (``tomllib``) but does not write it; a
postdesk config is only tables of strings, numbers, booleans, lists and
inline tables, which this covers without another dependency.
"""

from __future__ import annotations

from typing import Any


def toml_dumps(data: dict[str, Any]) -> str:
    """``{"section": {"key": value}}`` as TOML text (tables of str/int/float/bool/lists/dicts);
    ``{"section": [{...}, ...]}`` as an array of tables (``[[section]]``)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{value(str(k))} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {v!r} as TOML")

    out = []
    for section, values in data.items():
        if isinstance(values, list):  # an array of tables: [[departments]]
            for table in values:
                out.append(f"[[{section}]]")
                out.extend(f"{k} = {value(v)}" for k, v in table.items())
                out.append("")
            continue
        out.append(f"[{section}]")
        out.extend(f"{k} = {value(v)}" for k, v in values.items())
        out.append("")
    return "\n".join(out)
