"""The message filter: raw message + envelope + what the store knows -> Decision.

Pure functions in small named steps (see docs/filter.md):

- ``parse``       bytes -> Parsed (never raises)             parse.py
- ``clean_header``  header values safe to write again          headers.py
- loops/bounces/auto/list detection                           loops.py
- ``find_tag`` and threading                                   thread.py
- [pvt] / [closed]                                             tags.py
- body text and new text                                       body.py
- attachments                                                  attachments.py
- trusted staff                                                trust.py
- ``decide``      the steps composed in the order of docs/filter.md   pipeline.py

``pipe.py`` (the pipe(8) entry point) lives here too but is imported only
by the CLI.
"""

from __future__ import annotations

from postdesk.filter.headers import clean_header
from postdesk.filter.parse import Parsed, parse
from postdesk.filter.pipeline import decide
from postdesk.filter.thread import find_tag, strip_subject

__all__ = ["parse", "Parsed", "decide", "find_tag", "strip_subject", "clean_header"]
