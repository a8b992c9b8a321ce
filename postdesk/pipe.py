"""``postdesk filter``: the after-queue entry point, run by Postfix pipe(8).

master.cf passes the envelope as arguments and the message on stdin::

    postdesk unix - n n - 10 pipe flags=Rq user=postdesk null_sender=
      argv=/usr/bin/postdesk filter --sender=${sender} --recipient=${recipient}
      --queue-id=${queue_id} --client-address=${client_address}
      --sasl-username=${sasl_username} --helo-name=${client_helo}

This module is a thin adapter over ``postdesk.ingest.ingest`` (the same path
the milter takes); the exit status comes from the one table in
``postdesk.outcomes``.  pipe(8) (Postfix 3.7) defers on 75 (EX_TEMPFAIL),
bounces on the other sysexits codes and on a plain 1, and lets output that
*starts* with ``4.x.x text`` or ``5.x.x text`` (RFC 3463) set the DSN.  Hence:

- recorded, duplicate or deliberately ignored: exit 0;
- anything transient (store locked or unreachable, disk full, a config the
  admin has to fix, an unexpected exception): a ``4.x.x`` line, exit 75, so
  Postfix keeps the message and retries; the traceback is logged once, here;
- a permanent refusal (over ``[limits] max_message_bytes``, empty input):
  a ``5.x.x`` line, then a sysexits code other than 75;
- never 1.

Log lines are held until the status line is written, since pipe(8) reads
stdout and stderr through one pipe and only a leading status counts.  They
also go where ``[log] target`` says, as every other command's do
(``postdesk.logsetup.configure_held``): with ``auto`` or ``syslog`` to the
socket of ``[log] syslog_socket``, facility mail (pipe(8) discards the
output of a successful delivery, and ops expect the per-message line in the
mail log next to Postfix's own), with ``file:PATH`` to that file.  Until the
configuration is read (or when it cannot be), to /dev/log.

Imports stay lazy: this path loads neither pymilter nor Alembic, because
Postfix starts one process per message and start-up time is the cost.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from typing import BinaryIO, TextIO

from postdesk import logsetup
from postdesk.mail import strip_brackets
from postdesk.outcomes import ANSWERS, EX_NOINPUT, EX_TEMPFAIL, FAILURE, TOO_BIG, Outcome, too_big_reason

log = logging.getLogger("postdesk")

# RFC 3463: X.3.5 "system incorrectly configured", X.3.0 "other mail system
# status", X.6.0 "other or undefined media error".
DSN_CONFIG = "4.3.5"
DSN_TRANSIENT = FAILURE.dsn
DSN_EMPTY = ANSWERS[Outcome.REJECTED].dsn


def run(
    options,
    config_path: str | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Handle one message; returns the exit status for pipe(8).

    ``options`` carries sender, recipients, queue_id, client_address and
    sasl_username (the argparse namespace of ``postdesk filter``).
    """
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    held = io.StringIO()
    logsetup.setup("filter", "INFO", stream=held, syslog=True)
    status_line = ""
    try:
        code, status_line = _run(options, config_path, stdin, held)
    except Exception as e:
        # The adapter boundary: anything not known to be permanent defers.
        log.exception("%s: unexpected error: %s; deferring (exit 75)", getattr(options, "queue_id", "") or "NOQUEUE", e)
        code, status_line = EX_TEMPFAIL, f"{DSN_TRANSIENT} internal error; try again later"
    except BaseException:
        # KeyboardInterrupt / SystemExit: let them end the process (pipe(8)
        # defers on death by signal), but do not lose what was logged.
        _flush(stdout, stderr, held, "")
        raise
    _flush(stdout, stderr, held, status_line)
    return code


def _flush(stdout: TextIO, stderr: TextIO, held: io.StringIO, status_line: str) -> None:
    try:
        if status_line:
            stdout.write(status_line + "\n")
            stdout.flush()
        stderr.write(held.getvalue())
        stderr.flush()
    except OSError:
        pass  # pipe(8) went away: nothing left to tell it


def _run(options, config_path: str | None, stdin: BinaryIO, held: io.StringIO) -> tuple[int, str]:
    from postdesk import config as configmod
    from postdesk.filter.decision import Envelope

    started = time.monotonic()
    envelope = Envelope(
        sender=strip_brackets(options.sender),  # pipe(8) gives bare addresses; tolerate <...> and <>
        recipients=tuple(a for a in (strip_brackets(r) for r in options.recipients or ()) if a),
        queue_id=options.queue_id or "",
        client_address=options.client_address or "",
        sasl_username=options.sasl_username or "",
        helo=getattr(options, "helo_name", "") or "",
    )
    qid = envelope.queue_id or "NOQUEUE"

    # A broken config is the admin's to fix, not the sender's fault: defer,
    # so Postfix retries once it is fixed instead of bouncing mail.
    try:
        config = configmod.load(config_path)
    except configmod.ConfigError as e:
        log.error("%s: configuration error: %s; deferring the message (exit 75)", qid, e)
        return EX_TEMPFAIL, f"{DSN_CONFIG} postdesk configuration error: {e}"
    logsetup.configure_held("filter", config, held)

    limit = config.limits.max_message_bytes
    try:
        # Read at most one byte over the limit: enough to know, bounded memory.
        raw = stdin.read(limit + 1)
    except OSError as e:
        log.error("%s: cannot read the message: %s; deferring (exit 75)", qid, e)
        return EX_TEMPFAIL, f"{DSN_TRANSIENT} cannot read the message: {e}"

    from postdesk.ingest import Result, log_result

    if len(raw) > limit:
        reason = too_big_reason(limit)
        log_result(envelope, Result(Outcome.REJECTED, reason=reason), started)
        return TOO_BIG.exit_code, f"{TOO_BIG.dsn} {reason}"
    if not raw.strip():
        reason = "empty message: nothing on standard input"
        log_result(envelope, Result(Outcome.REJECTED, reason=reason), started)
        return EX_NOINPUT, f"{DSN_EMPTY} {reason}"

    try:
        from postdesk.ingest import MessageStore, ingest
        from postdesk.store import Store, StoreUnavailable
    except Exception:
        log.exception("%s: cannot load postdesk; deferring (exit 75)", qid)
        return EX_TEMPFAIL, f"{DSN_TRANSIENT} postdesk cannot start; try again later"

    store: MessageStore | None = None
    try:
        store = Store.from_config(config)
        result = ingest(raw, envelope, store, config)
    except StoreUnavailable as e:
        # The driver's error is chained as __cause__: the one traceback shows it.
        log.error("%s: store unavailable: %s; deferring (exit 75)", qid, e, exc_info=True)
        return EX_TEMPFAIL, f"{DSN_TRANSIENT} ticket store unavailable; try again later"
    except OSError as e:
        log.exception("%s: I/O error: %s; deferring (exit 75)", qid, e)
        return EX_TEMPFAIL, f"{DSN_TRANSIENT} I/O error; try again later"
    except Exception as e:
        # Unknown means "not known to be permanent": keep the mail, log once.
        log.exception("%s: unexpected error: %s; deferring (exit 75)", qid, e)
        return EX_TEMPFAIL, f"{DSN_TRANSIENT} internal error; try again later"
    finally:
        if store is not None:
            try:
                store.close()
            except Exception:
                pass  # the message is recorded (or not) already; its answer stands

    answer = ANSWERS[result.outcome]
    if answer.exit_code == 0:
        return 0, ""
    reason = result.reason or (result.decision.reason if result.decision else "") or result.outcome.value
    return answer.exit_code, f"{answer.dsn} {reason}"
