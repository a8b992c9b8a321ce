"""The notifier worker: one pass sends what is due; ``run`` ticks passes with ``schedule``.

A pass first closes the pending tickets that waited too long for the
customer and queues the one reminder of those due one
(``postdesk.store.lifecycle``); then it claims due outbox rows in batches (``postdesk.store.outbox``: one
transaction to claim, one to load, one to record a batch), lets the policy
(``postdesk.notifier.policy``) decide about each row, composes each mail, submits it over the pass's one SMTP connection, and logs one line per
mail with the Postfix queue id first, as Postfix logs its own:

    4BxT2k1Z3n: to=<jane@example.org> ticket=1042 kind=ack msgid=<...> status=sent

One mail is in flight at a time: it is written (pipelined in one write when
the server allows, see ``smtp``) and its replies are read before the next is
composed, so a dropped connection leaves at most that one mail's fate
unknown.  A batch's results are recorded when the batch is done.

SIGTERM (and SIGINT) set a flag that is looked at between mails: the mail in
flight is finished, the batch's results are recorded, the rest of the
claimed batch is given back (queued, as it was), and ``run`` returns 0, as
systemd expects.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from postdesk.clock import utcnow
from postdesk.config import Config
from postdesk.notifier import policy
from postdesk.notifier.compose import ComposeError, StreamError, compose
from postdesk.notifier.smtp import SubmitError, Submitter
from postdesk.outbox_rows import Defer, Done, Job, Skip
from postdesk.outcomes import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_TEMPFAIL
from postdesk.store import StoreUnavailable, lifecycle, outbox
from postdesk.store.blobs import Blob, BlobError

log = logging.getLogger("postdesk.notifier")


BATCH = 50  # rows per claim: few commits per mail, and a lease is never at risk within a batch


@dataclass
class PassStats:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    lost: int = 0  # our lease ran out and another worker took the row
    reminded: int = 0  # pending tickets whose one reminder was queued (postdesk.store.lifecycle)
    closed: int = 0  # pending tickets closed for want of an answer

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
        self._unrecorded: list[Done] = []

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
        """Send everything that is due now.  Raises StoreUnavailable on database trouble.

        Batch by batch: claim, load, send each mail (one in flight), record
        the batch's results in one transaction.  A lost connection ends the
        pass; the mails of the batch not yet sent are deferred with it.
        """
        stats = PassStats()
        if self._unrecorded:
            # Results a previous pass could not write (store down): write them
            # first, before their leases run out and the mails go again.
            self._record(self._unrecorded, stats)
        if self._secret is None:
            self._secret = self.store.secret()
        # Pending tickets first: the reminders and status mails they queue
        # go out in this same pass.
        due = lifecycle.run(self.store, self.config, self.clock())
        stats.reminded, stats.closed = due.reminded, due.closed
        with self._submitter_factory() as submitter:
            while not self.stopping:
                claims = outbox.claim(self.store, self.clock(), self.config.notifier.lease, self.batch)
                if not claims:
                    break
                now = self.clock()
                claimed, acks = outbox.load(self.store, claims, self.config, now)
                jobs = policy.decide(claimed, acks, self.config, now)
                done: list[Done | Skip | Defer] = []
                try:
                    self._send(jobs, submitter, stats, done)
                finally:
                    self._record(done, stats)  # also what went out before an unexpected error
                if submitter.broken or len(claims) < self.batch:
                    break
        return stats

    def _send(self, jobs: list, submitter: Submitter, stats: PassStats, done: list) -> None:
        """Compose and send a claimed batch, one mail at a time; results
        (and the policy's Skips and Defers) go to ``done``."""
        secret = self._secret
        assert secret is not None  # read by run_pass before any claim
        for i, job in enumerate(jobs):
            if self.stopping:
                # SIGTERM: what is sent is recorded; the rest goes back.
                outbox.release(self.store, [(j.row_id, j.token) for j in jobs[i:] if j is not None])
                break
            if job is None:
                stats.lost += 1
                log.warning('NOQUEUE: status=lost reason="lease taken over by another worker"')
                continue
            if isinstance(job, (Skip, Defer)):
                done.append(job)  # saved with the batch's results
                continue
            now = self.clock()
            try:
                mail = compose(job, self.config, secret, now, self._read_attachment)
            except ComposeError as e:
                done.append(Done(job, "failed", now, error=str(e)))
                continue
            except (OSError, BlobError, StoreUnavailable) as e:  # an attachment unreadable now: retry
                done.append(Done(job, "retry", now, error=f"attachment: {e}"))
                continue
            try:
                # Attachments are read as the mail is written (compose.Body).
                qid = submitter.send(mail.sender, mail.recipient, mail.payload)
            except (BlobError, StoreUnavailable, StreamError) as e:
                # Reading an attachment failed mid-mail: the submitter ended
                # the session before the mail was complete; nothing queued.
                done.append(Done(job, "retry", self.clock(), message_id=mail.message_id, error=f"attachment: {e}"))
            except SubmitError as e:
                # After a lost connection, the rest of the batch fails at once
                # with the same error (never written: deferred, not resent).
                status = "failed" if e.permanent else "retry"
                done.append(Done(job, status, self.clock(), message_id=mail.message_id, error=str(e)))
            else:
                done.append(Done(job, "sent", self.clock(), message_id=mail.message_id, queue_id=qid))

    def _record(self, done: list, stats: PassStats) -> None:
        """Write a batch's results in one transaction, then log one line per mail."""
        if not done:
            return
        try:
            states = outbox.record(self.store, done, self.config, self.clock())
        except Exception:
            self._unrecorded = list(done)
            raise
        self._unrecorded = []
        for d, (state, delay) in zip(done, states):
            if isinstance(d, (Skip, Defer)):
                setattr(stats, state, getattr(stats, state) + 1)
                retry = f" retry_in={int(delay)}s" if state == "deferred" else ""
                reason = d.reason.replace('"', "'")
                log.info('NOQUEUE: to=<%s> ticket=%d kind=%s status=%s%s reason="%s"', d.recipient, d.ticket, d.kind, state, retry, reason)
                continue
            if state == "lost" and d.status == "sent":
                stats.lost += 1
                self._log(d.job, d.queue_id, d.message_id, "sent", reason="lease taken over by another worker: possible duplicate")
                continue
            setattr(stats, state, getattr(stats, state) + 1)  # sent / deferred / failed / lost
            self._log(d.job, d.queue_id, d.message_id, state, reason=d.error, delay=delay)

    def _read_attachment(self, sha256: str) -> Blob:
        """The blob, read a chunk at a time when the mail is written."""
        return self.store.blob(sha256)

    @staticmethod
    def _log(job: Job, qid: str, msgid: str, status: str, *, reason: str = "", delay: float = 0.0) -> None:
        fields = [f"to=<{job.recipient.address}>", f"ticket={job.ticket}", f"kind={job.kind}", f"msgid=<{msgid}>", f"status={status}"]
        if status == "deferred":
            fields.append(f"retry_in={int(delay)}s")
        if reason:
            fields.append('reason="' + reason.replace('"', "'") + '"')
        level = logging.INFO if status == "sent" and not reason else logging.WARNING
        # NOQUEUE as Postfix writes it for mail it did not queue; "-" for a
        # mail accepted by a server that named no queue id (not Postfix).
        log.log(level, "%s: %s", qid or ("-" if status == "sent" else "NOQUEUE"), " ".join(fields))


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

    from postdesk.notifier.templates import TemplateProblem, for_config
    from postdesk.store import Store, StoreUnavailable

    try:
        # Every template, tried with sample data before the first mail: a
        # broken one stops start-up here, never a mail at send time.
        for_config(config)
    except TemplateProblem as e:
        for problem in e.problems:
            log.error("template %s", problem)
        log.error("not started: fix the templates (postdesk check lists them)")
        return EX_CONFIG
    own_store = store is None
    store = store or Store.from_config(config)
    try:
        return _run(config, once, Worker(config, store, clock), StoreUnavailable, schedule)
    finally:
        if own_store:
            store.close()


def _run(config: Config, once: bool, worker: Worker, StoreUnavailable, schedule) -> int:
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
