"""Record one message: the filter and the store in one transaction.

This is the single path shared by the milter (at end-of-message) and the
pipe filter (``postdesk filter``): parse, decide against what the store
knows, apply, and write the one log line per message that ops read next to
Postfix's own.  Transient failures propagate as exceptions; each adapter
catches them at its boundary, logs the traceback once, and answers Postfix
with "try again later" (451 / exit 75).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from postdesk.auth import authenticate
from postdesk.auth.result import AuthResult
from postdesk.clock import utcnow
from postdesk.config import Config
from postdesk.filter import decide, parse
from postdesk.filter.decision import Decision, Envelope, Kind, Known
from postdesk.filter.parse import Parsed
from postdesk.filter.pipeline import read_ahead
from postdesk.outcomes import Outcome, Result

log = logging.getLogger("postdesk")


@runtime_checkable
class MessageStore(Protocol):
    """What ingest and its adapters (the milter, the pipe filter, the
    importer) need from a store, as ``Known`` is what the filter needs:
    ``postdesk.store.Store`` is one, the adapters' ``GroupCommit`` wraps
    one, tests pass their own."""

    def record(self, decide: Callable[[Known], Decision], envelope: Envelope, config: Config, now: datetime) -> Result:
        """Call ``decide`` with a view of the store and apply its Decision, in
        one transaction; raises on transient failure (locked, unreachable, disk full)."""
        ...

    def close(self) -> None:
        """Release the database connections (the adapter is done)."""
        ...


@dataclass(frozen=True)
class Prepared:
    """What a message needs before the store: parsed, and who wrote it."""

    parsed: Parsed
    auth: AuthResult
    started: float  # time.monotonic() when the work on the message began


def prepare(raw: bytes, envelope: Envelope, config: Config) -> Prepared:
    """Parse and authenticate ``raw``: all of a message's DNS waiting.

    Done before the store's transaction (no lock is held while DNS answers),
    and by the milter on the SMTP session's own thread, so a sender whose
    names answer slowly holds only their own session, never the store
    threads that every other support mail needs.
    """
    started = time.monotonic()
    parsed = parse(raw)
    auth = authenticate(parsed, raw, envelope, config)
    read_ahead(parsed, envelope, config)  # the rules' reading of the message, out of the store's transaction
    return Prepared(parsed, auth, started)


def ingest(
    raw: bytes,
    envelope: Envelope,
    store: MessageStore,
    config: Config,
    now: datetime | None = None,
    prepared: Prepared | None = None,
) -> Result:
    """Decide about ``raw`` and record it; returns what happened.

    ``prepared``: ``prepare(raw, ...)`` when the caller did it already.
    Raises on transient failure (store locked or unreachable, disk full);
    the caller answers 451 or exits 75.  The caller has checked the size
    against ``[limits] max_message_bytes`` (``outcomes.TOO_BIG``) before
    reading the whole message.
    """
    p = prepared or prepare(raw, envelope, config)
    now = now or utcnow()
    result = store.record(lambda known: decide(p.parsed, envelope, known, config, now, auth=p.auth), envelope, config, now)
    log_result(envelope, result, p.started)
    return result


def log_result(envelope: Envelope, result: Result, started: float, *, msgid: str = "", author: str = "") -> None:
    """The one INFO line per message: queue id first, key=value after."""
    d = result.decision
    fields = [
        f"msgid=<{(d.message_id if d else msgid) or ''}>",
        f"from=<{(d.author if d and d.author else author or envelope.sender)}>",
    ]
    if result.ticket is not None:
        fields.append(f"ticket={result.ticket}")
    fields.append(f"outcome={result.outcome.value}")
    if d and d.flags:
        fields.append("flags=" + ",".join(sorted(d.flags)))
    if d and d.kind in (Kind.NEW, Kind.FOLLOWUP):
        fields.append(f"attachments={len(d.attachments)}")
    if d and result.outcome is Outcome.CREATED and d.department:
        fields.append(f"department={d.department}")
    # status=, owner=, merged_into=, ...: only where they changed.
    fields.extend(f"{name}={value}" for name, value in result.changes.items())
    if d and result.outcome in (Outcome.CREATED, Outcome.UPDATED) and d.auth.source != "none":
        # Who really wrote it, when it was checked: "auth=spf:pass,dkim:none,dmarc:pass" (postdesk.auth).
        fields.append(f"auth={d.auth.summary()}")
    reason = result.reason or (d.reason if d else "")
    if reason:
        fields.append(f'reason="{reason}"')
    fields.append(f"ms={int((time.monotonic() - started) * 1000)}")
    log.info("%s: %s", envelope.queue_id or "NOQUEUE", " ".join(fields))
