"""The message filter: raw message + envelope + what the store knows -> Decision.

Pure functions (see docs/filter.md).  Reading the message:

- ``parse``         bytes -> Parsed (never raises)                parse.py
- header decoding, ``clean_header``                              headers.py
- MIME walking                                                    parts.py
- body text and new text                                          body.py, html2text.py
- attachments                                                     attachments.py
- ``find_tag``, threading by tag and Message-ID                   thread.py
- staff commands: the table and the matching                     commands.py
- the customer inside a forwarded mail ([fwd])                    forwarded.py
- the values in and out (Envelope, Decision, Known)               decision.py

Deciding: the rules, one module each, in their declared order
(``rules/__init__.py``), working on a ``Draft`` (draft.py); ``decide``
(pipeline.py) runs them.
"""

from __future__ import annotations

from postdesk.filter.headers import clean_header
from postdesk.filter.parse import Parsed, parse
from postdesk.filter.pipeline import decide
from postdesk.filter.thread import find_tag, strip_subject

__all__ = ["parse", "Parsed", "decide", "find_tag", "strip_subject", "clean_header"]
