"""Turning store rows into text for a terminal, or into JSON.

Everything a person reads passes through ``cell`` or ``indent``: stored
text comes from strangers' mail, and a control character (an ANSI escape,
a CR) or a bidirectional override (U+202E turns ``exe.txt`` into
``txt.exe`` on screen) must not rewrite what the admin sees.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def printable(text: str, keep: str = "") -> str:
    """Replace control and format characters (Unicode Cc, Cf: bidi
    overrides and isolates, zero-width joiners, ANSI escapes) by a space,
    or by ``\\u202e``-style escapes for the format ones so they stay visible."""
    out = []
    for c in text:
        if c in keep:
            out.append(c)
            continue
        category = unicodedata.category(c)
        if category == "Cf":
            out.append(f"\\u{ord(c):04x}")
        elif category[0] in "CZ" and c != " ":  # controls, separators (LS/PS), unassigned
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


def plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO 8601, paths and others as strings."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [plain(v) for v in value]
        return sorted(items) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def print_json(obj: Any) -> None:
    # JSON escapes every control character itself; a machine reads it.
    json.dump(plain(obj), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def cell(value: Any) -> str:
    """One value on one line of a table or a header line."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T" and value[4:5] == "-":
        return value[:19].replace("T", " ")  # an ISO timestamp from the store
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(sorted(cell(v) for v in value)) or "-"
    # One row per record: a stray CR/LF or control char would break the table.
    return printable(str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = []
    for row in [list(headers), *cells]:
        line = "  ".join(c.ljust(widths[i]) for i, c in enumerate(row))
        lines.append(line.rstrip())
    return "\n".join(lines)


def indent(text: str, prefix: str = "    ") -> str:
    """A message body, indented, each line neutralised (tabs kept)."""
    lines = (text or "").rstrip("\n").splitlines() or ["(no text)"]
    return "\n".join(prefix + printable(line, keep="\t") for line in lines)


def short(value: Any, width: int = 60) -> Any:
    if isinstance(value, str) and len(value) > width:
        return value[: width - 3] + "..."
    return value


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (sasl_map)
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    # A JSON string is a valid TOML basic string (same escapes).
    return json.dumps(str(value), ensure_ascii=False)


def ticket_text(ticket: dict, tag: str) -> str:
    """``postdesk ticket show N``: the ticket, its actions and attachments."""
    out = [
        f"ticket [{tag}{ticket.get('number')}] {cell(ticket.get('subject'))}",
        f"  status:     {cell(ticket.get('status'))}",
        f"  visible to: {'customers' if ticket.get('visible_to_customers') else 'staff only (internal)'}",
        f"  requester:  {cell(ticket.get('requester'))}",
        f"  created:    {cell(ticket.get('created_at'))}",
    ]
    # The lifecycle, where it says something (docs/commands.md).
    tag_of = lambda n: f"[{tag}{n}]"  # noqa: E731
    for label, key, show in (
        ("department", "department", cell),
        ("owner", "owner", cell),
        ("closed", "closed_at", cell),
        ("merged into", "merged_into", tag_of),
        ("follow-up of", "follow_up_of", tag_of),
    ):
        if ticket.get(key):
            out.append(f"  {label + ':':<11} {show(ticket[key])}")
    actions = ticket.get("actions") or []
    if not actions:
        out.append("")
        out.append("no actions")
    for a in actions:
        out.append("")
        head = [
            f"action {a.get('id')}",
            cell(a.get("created_at")) if a.get("created_at") else "",
            cell(a.get("author")),
            "public" if a.get("public") else "private",
        ]
        if a.get("kind") and a.get("kind") != "message":  # status changes and the like
            head.append(f"kind={cell(a.get('kind'))}")
        if a.get("flags"):
            head.append(f"flags={cell(a.get('flags'))}")
        out.append("  ".join(h for h in head if h))
        if a.get("message_id"):
            out.append(f"  message-id: <{cell(a.get('message_id'))}>")
        auth = a.get("auth")
        if auth:  # who really wrote it (docs/security.md)
            words = " ".join(f"{k}={cell(auth.get(k))}" for k in ("spf", "dkim", "dmarc"))
            out.append(f"  auth: {words} ({'verified' if auth.get('verified') else 'not verified'})")
        for att in a.get("attachments") or []:
            out.append(
                f"  attachment {att.get('id')}: {cell(att.get('filename'))} "
                f"({cell(att.get('content_type'))}, {att.get('size')} bytes, sha256 {str(att.get('sha256'))[:16]}...)"
            )
        out.append(indent(a.get("text") or ""))
    return "\n".join(out)
