"""The notifier: sends the acknowledgement, the team alert and debounced customer updates.

``run(config, once=False, clock=utcnow) -> int`` is what ``postdesk notifier
[--once]`` calls.  Modules: ``policy`` (who gets mail, how often, what an
update holds), ``compose`` (the mails), ``smtp`` (submission), ``worker``
(passes and the schedule loop).  The plain values it reads and returns are
in ``postdesk.outbox_rows``; the SQL lives in ``postdesk.store.outbox``.
"""

from __future__ import annotations


def run(config, once: bool = False, clock=None, **kwargs) -> int:
    from postdesk.clock import utcnow
    from postdesk.notifier.worker import run as _run

    return _run(config, once=once, clock=clock or utcnow, **kwargs)


__all__ = ["run"]
