"""``postdesk config show``: the effective configuration as TOML."""

from __future__ import annotations

from postdesk.cli import render
from postdesk.outcomes import EX_OK


def cmd_show(args, config) -> int:
    from postdesk.config import SCHEMA

    out = [f"# postdesk effective configuration (from {config.source}; defaults filled in)"]
    for section, values in config.as_dict().items():
        out.append("")
        out.append(f"[{section}]")
        for key, value in values.items():
            help_text = SCHEMA[section][key][2]
            out.append(f"{key} = {render.toml_value(value)}  # {help_text}")
    print("\n".join(out))
    return EX_OK
