"""``postdesk lmtp``: the resident after-queue path, for Postfix's lmtp(8).

Postfix accepts the mail first, queues it, then delivers the support
address's copy over LMTP (RFC 2033) to this long-running server, which runs
the same ingest (filter + store) as the milter and the pipe filter and
answers each recipient after DATA: 250 only once the message is committed.
No interpreter starts per message, unlike ``postdesk filter`` under pipe(8).

- ``xforward``: Postfix's XFORWARD attributes (client address, name, HELO,
  queue id), the authentication input an after-queue path otherwise lacks.
- ``protocol``: the LMTP session (aiosmtpd's ``LMTP``) and the handler that
  turns a delivered message into per-recipient replies.
- ``server``: ``run(config)``: the socket, signals, draining at stop.

Imported lazily by the CLI; it never loads pymilter.
"""

from __future__ import annotations


def run(config, store=None, ingest=None) -> int:
    from postdesk.lmtp.server import run as _run

    return _run(config, store=store, ingest=ingest)


__all__ = ["run"]
