"""Rule "commands": ``[pvt]`` and ``[closed]`` from trusted staff.

Any case, in the subject or in the new text of the body (above, between or
below quote blocks, never inside them: quoted history does not count; the
matching is in ``postdesk.filter.tags``).  Only staff proven by rule
"trust" may give commands; anyone else's are text.
"""

from __future__ import annotations

from postdesk.filter import tags
from postdesk.filter.decision import Decision
from postdesk.filter.draft import Draft


def apply(d: Draft) -> Decision | None:
    if not d.staff:
        return None
    cmd = tags.find_commands(d.headers.original_subject, d.new_text)
    if cmd.pvt:
        d.public = False
        d.flags.add("pvt")
    if cmd.closed:
        d.close = True
        d.flags.add("closed")
    return None
