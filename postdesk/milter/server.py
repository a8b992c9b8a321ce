"""``postdesk milter``: open the socket, register with libmilter, serve.

What Postfix needs from us (MILTER_README): a socket it can connect to
(``smtpd_milters = unix:/var/spool/postfix/postdesk/milter.sock``; a unix
socket, because libmilter's small writes over TCP meet delayed ACKs and cost
3-4x the throughput, see docs/postfix.md), and a milter that answers.  We:

- remove a stale unix socket left by a crash (but refuse to start when
  another milter is still answering on it);
- set the socket's group and mode after bind (``[milter] socket_group``,
  ``socket_mode``) so Postfix's smtpd (user postfix) can connect;
- negotiate only the actions we use;
- set pymilter's exception policy to TEMPFAIL (never accept unrecorded mail);
- stop within a second of SIGTERM/SIGINT (see ``serve``), let the sessions
  in flight finish, remove the socket and close the store.
"""

from __future__ import annotations

import grp
import logging
import os
import signal
import socket
import stat
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from postdesk.config import Config, redact_url
from postdesk.outcomes import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_UNAVAILABLE

if TYPE_CHECKING:
    from postdesk.ingest import MessageStore

log = logging.getLogger("postdesk")

NAME = "postdesk"
BACKLOG = 128  # SMTP bursts open many milter connections at once
# How long sessions in flight may take to finish after SIGTERM; Postfix's
# milter_content_timeout is 300 s, systemd's TimeoutStopSec 30 s: a message
# past its end of data is recorded within this, the rest Postfix defers.
DRAIN_SECONDS = 20.0

def unix_path(address: str) -> str | None:
    """The file of a ``unix:``/``local:`` milter address, else None."""
    for prefix in ("unix:", "local:"):
        if address.startswith(prefix):
            return address[len(prefix):]
    return None


def socket_alive(path: str, timeout: float = 1.0) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def prepare_socket(path: str, what: str = "milter", key: str = "[milter] socket") -> str | None:
    """Make room for the socket; returns an error message or None.

    ``what`` and ``key`` name the server and its setting in the messages
    (``postdesk lmtp`` passes "postdesk lmtp" and "[lmtp] listen")."""
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path} exists and is not a socket; remove it or change {key}"
    if socket_alive(path):
        return f"another {what} is already listening on {path}; stop it first"
    os.unlink(path)  # stale: left by a milter that did not exit cleanly
    log.info("removed stale socket %s", path)
    return None


def set_socket_access(path: str, config: Config) -> None:
    """After bind: group and mode from [milter], so Postfix can connect."""
    if config.milter.socket_group:
        os.chown(path, -1, grp.getgrnam(config.milter.socket_group).gr_gid)
    os.chmod(path, config.milter.socket_mode)


class Sessions:
    """How many milter connections are open (connect .. close), to wait for at stop."""

    def __init__(self) -> None:
        self.open: set[int] = set()  # id() of each connection's context
        self.changed = threading.Condition()

    @property
    def count(self) -> int:
        return len(self.open)

    def opened(self, ctx) -> None:
        with self.changed:
            self.open.add(id(ctx))

    def closed(self, ctx) -> None:
        # A probe that connects and leaves (postdesk check) closes without
        # ever having sent CONNECT: discard, not remove.
        with self.changed:
            self.open.discard(id(ctx))
            self.changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: not self.open, timeout)


def register(factory, actions: int, sessions: Sessions | None = None) -> None:
    """Install pymilter's callbacks (as Milter.runmilter does) for ``factory``."""
    import Milter
    import milter

    sessions = sessions or Sessions()

    def connect(ctx, *args):
        sessions.opened(ctx)
        return Milter.connect_callback(ctx, *args)

    def close(ctx):
        try:
            return Milter.close_callback(ctx)
        finally:
            sessions.closed(ctx)

    Milter.factory = factory
    milter.set_flags(actions)
    milter.set_connect_callback(connect)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(close)
    milter.register(
        NAME,
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


def _libmilter():
    """The module's own libmilter (already loaded), for ctypes; None if unreachable."""
    import ctypes

    import milter

    try:
        lib = ctypes.CDLL(milter.__file__)
        lib.smfi_stop, lib.mi_stop  # noqa: B018 -- both must exist
        return lib
    except (OSError, AttributeError):
        return None


def _smfi_stop(lib) -> None:
    """libmilter's smfi_stop(), called without holding the GIL.

    smfi_stop waits for the listener's mutex, which the listener holds
    through its whole poll() (up to 5 s).  Through ctypes (which releases the
    GIL around a foreign call) the main thread can meanwhile wake the
    listener; pymilter's ``milter.stop()`` is the fallback.
    """
    if lib is not None:
        lib.smfi_stop()
    else:
        import milter

        milter.stop()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def catch_early_signals() -> tuple[threading.Event, dict]:
    """Note a stop signal that comes before ``serve`` runs.

    The socket answers from ``opensocket`` on, so a supervisor (or a test)
    may send SIGTERM before libmilter runs; Python's default action would
    kill the process and leave the socket behind.
    """
    early = threading.Event()

    def note(signum, _frame) -> None:
        early.signum = signum  # type: ignore[attr-defined]
        early.set()

    previous = {sig: signal.signal(sig, note) for sig in STOP_SIGNALS}
    return early, previous


def _restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def serve(address: str, sessions: Sessions, drain: float = DRAIN_SECONDS, early: threading.Event | None = None) -> str | None:
    """Run libmilter until SIGTERM/SIGINT/SIGHUP; returns an error or None.

    libmilter's smfi_main handles those signals on a thread of its own, and
    its listener notices the stop only when its poll() times out (5 s,
    MI_CHK_TIME): the milter went on for 1-6 s after SIGTERM with its socket
    bound, and a restart meanwhile found "another milter is already
    listening".  So smfi_main runs on a thread here; it blocks the signals
    for itself and the threads it starts, while the main thread keeps them
    unblocked, and Linux hands a process-directed signal to the main thread
    when it does not block it.  Our handler starts smfi_stop() on a thread
    (it waits for the listener's mutex) and the main thread connects to the
    socket every 50 ms: each connection ends the listener's poll(), so
    smfi_stop gets the mutex, closes and unlinks the socket, and smfi_main
    returns.  Sessions in flight go on (a stop, unlike SIGINT's abort in
    libmilter, lets them finish) and are waited for up to ``drain`` seconds.

    Linux prefers the main thread for a process-directed signal, but not
    always (not when it already has one pending): libmilter's own signal
    thread may take a SIGTERM.  So the main loop also reads libmilter's stop
    flag (``mi_stop()``, a plain read) every 0.1 s and wakes the listener
    when a stop was posted by anyone.
    """
    import milter

    result: list[str | None] = [None]
    done = threading.Event()
    stopping = threading.Event()
    path = unix_path(address)
    lib = _libmilter()

    def main() -> None:
        try:
            milter.main()
        except milter.error as e:
            result[0] = str(e)
        finally:
            done.set()

    def on_signal(signum, _frame) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("%s: stopping", signal.Signals(signum).name)
            threading.Thread(target=_smfi_stop, args=(lib,), name="smfi_stop", daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        if early is not None and early.is_set():
            log.info("%s: stopping (it came during start-up)", signal.Signals(getattr(early, "signum", signal.SIGTERM)).name)
            return None
        thread = threading.Thread(target=main, name="libmilter", daemon=True)
        thread.start()
        while not done.wait(0.05 if stopping.is_set() else 0.1):
            if not stopping.is_set() and lib is not None and lib.mi_stop() != 0:
                stopping.set()  # libmilter's signal thread took the signal
                log.info("stopping")
            if stopping.is_set() and path:
                socket_alive(path, timeout=0.05)  # wakes the listener's poll()
        thread.join()
        if stopping.is_set() and result[0]:
            # A stop that came while smfi_main was starting makes it fail
            # ("cannot run main"): that is the stop we asked for.
            log.info("stopped during start-up: %s", result[0])
            result[0] = None
        if stopping.is_set() and not sessions.wait_idle(drain):
            log.warning("%d milter session(s) still open after %.0fs; Postfix defers their mail", sessions.count, drain)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result[0]


def run(config: Config, store: MessageStore | None = None, ingest: Callable | None = None) -> int:
    """Serve until SIGTERM; returns a sysexits code (never 1).

    ``store`` and ``ingest`` default to ``Store.from_config(config)`` and
    ``postdesk.ingest.ingest``; tests and benchmarks may pass their own.
    """
    import Milter
    import milter

    from postdesk.milter.app import action_names, actions_for, make_factory
    from postdesk.store.groupcommit import GroupCommit, writers_for

    if store is None:
        from postdesk.store import Store

        store = Store.for_service(config)
        if store is None:
            return EX_CONFIG

    if ingest is None:
        from postdesk.ingest import ingest  # fail at start-up, not per message

    address = config.milter.socket
    path = unix_path(address)
    if path:
        try:
            problem = prepare_socket(path)
        except OSError as e:
            problem = f"cannot prepare the socket {path}: {e}"
        if problem:
            log.error("%s", problem)
            return EX_UNAVAILABLE
        if config.milter.socket_group:
            try:
                grp.getgrnam(config.milter.socket_group)
            except KeyError:
                log.error("milter.socket_group: no group %r on this system", config.milter.socket_group)
                return EX_CONFIG

    actions = actions_for(config)
    # The store runs on the writer threads, never on libmilter's (see make_factory).
    threads = writers_for(config.store.url)
    writer = GroupCommit(store, threads)
    sessions = Sessions()
    register(make_factory(config, writer, ingest), actions, sessions)
    milter.setconn(address)
    milter.settimeout(config.milter.timeout)
    milter.setbacklog(BACKLOG)
    # An exception that escapes our own boundary still must not accept.
    milter.set_exception_policy(Milter.TEMPFAIL)
    early, default_handlers = catch_early_signals()  # restored when run() returns
    try:
        milter.opensocket(False)
    except milter.error as e:
        log.error("cannot open milter socket %s: %s", address, e)
        _restore(default_handlers)
        writer.close()
        return EX_UNAVAILABLE
    if path:
        try:
            set_socket_access(path, config)
        except OSError as e:
            log.error("cannot set owner/mode of %s: %s", path, e)
            try:
                os.unlink(path)  # a socket Postfix cannot use is not left behind
            except OSError:
                pass
            _restore(default_handlers)
            writer.close()
            return EX_UNAVAILABLE

    log.info(
        "starting: socket=%s mode=%s group=%s deliver=%s actions=%s timeout=%ds spool_memory=%d max_message_bytes=%d store=%s writers=%d pid=%d",
        address,
        f"{config.milter.socket_mode:04o}" if path else "-",
        config.milter.socket_group or "-",
        config.milter.deliver,
        action_names(actions),
        config.milter.timeout,
        config.milter.spool_memory,
        config.limits.max_message_bytes,
        redact_url(config.store.url),
        threads,
        os.getpid(),
    )
    status = EX_OK
    try:
        error = serve(address, sessions, early=early)
        if error:
            log.error("milter stopped: %s", error)
            status = EX_SOFTWARE
    finally:
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
            writer.close()  # what is queued is committed first
        except Exception:
            log.warning("closing the store failed", exc_info=True)
    _restore(default_handlers)
    log.info("stopped")
    return status
