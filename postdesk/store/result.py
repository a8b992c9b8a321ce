"""The Result type ``Store.record`` returns (``postdesk.ingest.Result``).

Imported lazily: ``postdesk.ingest`` imports the whole filter, which the
store itself does not need.  When the filter cannot be imported (the store
used on its own, e.g. by its tests while the filter is being changed), a
dataclass with the same fields stands in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from postdesk.outcomes import Outcome


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    ticket: int | None = None
    action_id: int | None = None
    decision: Any = None
    reason: str = ""


def make_result(*args, **kwargs):
    try:
        from postdesk.ingest import Result
    except ImportError:
        Result = _Result
    return Result(*args, **kwargs)
