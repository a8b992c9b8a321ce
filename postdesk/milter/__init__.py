"""The postdesk milter: SMTP-time ticketing inside Postfix (``postdesk milter``).

- ``app``: the pymilter ``Milter.Base`` subclass, one per SMTP connection.
- ``spool``: the message in memory up to ``[milter] spool_memory``, then a temp file.
- ``subject``: the ``[#N]`` Subject tag (RFC 2047 safe, never twice).
- ``server``: ``run(config)``: socket, libmilter registration, signals.

Imported lazily by the CLI: the pipe path (``postdesk filter``) never loads pymilter.
"""

from __future__ import annotations


def run(config, store=None, ingest=None) -> int:
    from postdesk.milter.server import run as _run

    return _run(config, store=store, ingest=ingest)


__all__ = ["run"]
