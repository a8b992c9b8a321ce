"""``postdesk config show``: the effective configuration as TOML."""

from __future__ import annotations

from postdesk.cli import render
from postdesk.outcomes import EX_OK


def cmd_show(args, config) -> int:
    from postdesk.config import SCHEMA

    out = [f"# postdesk effective configuration (from {config.source}; defaults filled in)"]
    effective = config.as_dict()
    departments = effective.pop("departments", [])
    for section, values in effective.items():
        out.append("")
        out.append(f"[{section}]")
        for key, value in values.items():
            help_text = SCHEMA[section][key][2]
            out.append(f"{key} = {render.toml_value(value)}  # {help_text}")
    for department in departments:
        out += ["", "[[departments]]"]
        out += [f"{key} = {render.toml_value(value)}" for key, value in department.items()]
    print("\n".join(out))
    return EX_OK
