"""The notifier worker: one pass sends what is due; ``run`` ticks passes with ``schedule``.

A pass claims due outbox rows in small batches (``postdesk.store.outbox``),
and for each: loads it, composes the mail, submits it over the pass's one
SMTP connection, and records the result, logging one line per mail with the
Postfix queue id first, as Postfix logs its own:

    4BxT2k1Z3n: to=<jane@example.org> ticket=1042 kind=ack msgid=<...> status=sent

SIGTERM (and SIGINT) set a flag that is looked at between mails: the mail in
flight is finished and recorded, the rest of the claimed batch is given back
(queued, as it was), and ``run`` returns 0, as systemd expects.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from postdesk.config import Config
from postdesk.notifier.compose import ComposeError, compose
from postdesk.notifier.jobs import Job, Skip
from postdesk.notifier.smtp import SubmitError, Submitter
from postdesk.outcomes import EX_OK, EX_SOFTWARE, EX_TEMPFAIL
from postdesk.store import outbox

log = logging.getLogger("postdesk.notifier")

def utcnow() -> datetime:
    """Naive UTC, as the store keeps it (same as postdesk.ingest.utcnow, without
    importing the filter)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


BATCH = 20  # rows per claim: small, so a lease is never at risk within a batch


@dataclass
class PassStats:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    lost: int = 0  # our lease ran out and another worker took the row
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.deferred + self.failed + self.suppressed


class Worker:
    def __init__(
        self,
        config: Config,
        store,
        clock: Callable[[], datetime] = utcnow,
        submitter_factory: Callable[[], Submitter] | None = None,
        batch: int = BATCH,
    ):
        self.config = config
        self.store = store
        self.clock = clock
        self.batch = batch
        self._submitter_factory = submitter_factory or (lambda: Submitter.from_config(config))
        self._stop = threading.Event()
        self._secret: bytes | None = None

    # -- control ------------------------------------------------------------------

    def stop(self, *_signal_args) -> None:
        """Finish the mail in flight, then stop (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> None:
        self._stop.wait(max(0.0, seconds))

    # -- one pass -----------------------------------------------------------------

    def run_pass(self) -> PassStats:
        """Send everything that is due now.  Raises StoreUnavailable on database trouble."""
        stats = PassStats()
        if self._secret is None:
            self._secret = self.store.secret()
        with self._submitter_factory() as submitter:
            while not self.stopping:
                claims = outbox.claim(self.store, self.clock(), self.config.notifier.lease, self.batch)
                if not claims:
                    break
                for i, claim in enumerate(claims):
                    if self.stopping:
                        outbox.release(self.store, claims[i:])
                        return stats
                    try:
                        self._one(claim, submitter, stats)
                    except SubmitError as e:
                        # The connection is gone: the rest of this batch waits
                        # for the backoff like the mail that found out.
                        now = self.clock()
                        for rest in claims[i + 1 :]:
                            outbox.mark_retry(self.store, rest, str(e), now, self.config)
                            stats.deferred += 1
                        return stats
                if len(claims) < self.batch:
                    break
        return stats

    def _one(self, claim: tuple[int, int], submitter: Submitter, stats: PassStats) -> None:
        now = self.clock()
        job = outbox.prepare(self.store, claim[0], claim[1], self.config, now)
        if job is None:
            stats.lost += 1
            log.warning("NOQUEUE: outbox=%d status=lost reason=\"lease taken over by another worker\"", claim[0])
            return
        if isinstance(job, Skip):
            stats.suppressed += 1
            log.info('NOQUEUE: to=<%s> ticket=%d kind=%s status=suppressed reason="%s"', job.recipient, job.ticket, job.kind, job.reason)
            return
        try:
            mail = compose(job, self.config, self._secret, now, self._read_attachment)
        except ComposeError as e:
            outbox.mark_failed(self.store, job, str(e), now)
            stats.failed += 1
            self._log(job, "", "", "failed", reason=str(e))
            return
        except OSError as e:  # an attachment file unreadable: the store's disk, retry
            state, delay = outbox.mark_retry(self.store, job, f"attachment: {e}", now, self.config)
            self._count(stats, state)
            self._log(job, "", "", state, reason=f"attachment: {e}", delay=delay)
            return
        try:
            qid = submitter.send(mail.sender, mail.recipient, mail.data)
        except SubmitError as e:
            now = self.clock()
            if e.permanent:
                outbox.mark_failed(self.store, job, str(e), now)
                stats.failed += 1
                self._log(job, "", mail.message_id, "failed", reason=str(e))
            else:
                state, delay = outbox.mark_retry(self.store, job, str(e), now, self.config)
                self._count(stats, state)
                self._log(job, "", mail.message_id, state, reason=str(e), delay=delay)
            if e.connection:
                raise
            return
        if outbox.mark_sent(self.store, job, mail.message_id, qid, self.clock()):
            stats.sent += 1
            self._log(job, qid, mail.message_id, "sent")
        else:
            stats.lost += 1
            self._log(job, qid, mail.message_id, "sent", reason="lease taken over by another worker: possible duplicate")

    def _read_attachment(self, sha256: str) -> bytes:
        return self.store.attachment_path(sha256).read_bytes()

    @staticmethod
    def _count(stats: PassStats, state: str) -> None:
        if state == "failed":
            stats.failed += 1
        elif state == "deferred":
            stats.deferred += 1
        else:
            stats.lost += 1

    @staticmethod
    def _log(job: Job, qid: str, msgid: str, status: str, *, reason: str = "", delay: float = 0.0) -> None:
        fields = [f"to=<{job.recipient.address}>", f"ticket={job.ticket}", f"kind={job.kind}", f"msgid=<{msgid}>", f"status={status}"]
        if status == "deferred":
            fields.append(f"retry_in={int(delay)}s")
        if reason:
            fields.append('reason="' + reason.replace('"', "'") + '"')
        level = logging.INFO if status == "sent" and not reason else logging.WARNING
        log.log(level, "%s: %s", qid or "NOQUEUE", " ".join(fields))


# --- the long-running loop -------------------------------------------------------


def _tick(worker: Worker) -> None:
    from postdesk.store import StoreUnavailable

    try:
        stats = worker.run_pass()
        if stats.handled:
            log.debug("pass: sent=%d deferred=%d failed=%d suppressed=%d", stats.sent, stats.deferred, stats.failed, stats.suppressed)
    except StoreUnavailable as e:
        # The database is back on a later tick; nothing was lost (rows stay queued).
        log.warning("store unavailable, will retry: %s", e)
    except Exception:
        log.exception("notifier pass failed")


def run(config: Config, once: bool = False, clock: Callable[[], datetime] = utcnow, store=None) -> int:
    """``postdesk notifier [--once]``: 0 when done or stopped by SIGTERM,
    75 (EX_TEMPFAIL) when a single pass could not reach the store."""
    import schedule

    from postdesk.store import Store, StoreUnavailable

    store = store or Store.from_config(config)
    worker = Worker(config, store, clock)
    if once:
        try:
            stats = worker.run_pass()
        except StoreUnavailable as e:
            log.error("store unavailable: %s", e)
            return EX_TEMPFAIL
        except Exception:
            log.exception("notifier pass failed")
            return EX_SOFTWARE
        log.info("pass done: sent=%d deferred=%d failed=%d suppressed=%d", stats.sent, stats.deferred, stats.failed, stats.suppressed)
        return EX_OK

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, worker.stop)
        signal.signal(signal.SIGINT, worker.stop)
    scheduler = schedule.Scheduler()
    scheduler.every(config.notifier.tick).seconds.do(_tick, worker)
    log.info("started: smtp=%s tick=%ss quiet_period=%ss", config.notifier.smtp, config.notifier.tick, config.notifier.quiet_period)
    _tick(worker)
    while not worker.stopping:
        scheduler.run_pending()
        idle = scheduler.idle_seconds
        worker.wait(min(idle if idle is not None else config.notifier.tick, config.notifier.tick))
    log.info("stopped")
    return EX_OK
