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
- stop cleanly on SIGTERM/SIGINT: libmilter's own signal thread catches
  them (smfi_main blocks them in every thread and sigwait()s), stops
  accepting connections, lets running sessions finish, and ``milter.main()``
  returns; we then remove the socket and close the store.
"""

from __future__ import annotations

import grp
import logging
import os
import re
import socket
import stat
from concurrent.futures import ThreadPoolExecutor

from postdesk.config import Config
from postdesk.outcomes import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_UNAVAILABLE

log = logging.getLogger("postdesk")

NAME = "postdesk"
BACKLOG = 128  # SMTP bursts open many milter connections at once
STORE_THREADS = 4


def store_threads(config: Config) -> int:
    """How many messages are filtered and recorded at once.

    SQLite has one writer at a time, yet 4 threads gave the best ticket
    throughput in bench/milter.py (82 msg/s against 52 with 1 and 56 with 2:
    parsing overlaps another message's transaction) at the price of a longer
    p99 (waits on SQLite's busy handler).  PostgreSQL overlaps writers.
    """
    return STORE_THREADS


def unix_path(address: str) -> str | None:
    """The file of a ``unix:``/``local:`` milter address, else None."""
    for prefix in ("unix:", "local:"):
        if address.startswith(prefix):
            return address[len(prefix):]
    return None


def redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def prepare_socket(path: str) -> str | None:
    """Make room for the socket; returns an error message or None."""
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path} exists and is not a socket; remove it or change [milter] socket"
    if socket_alive(path):
        return f"another milter is already listening on {path}; stop it first"
    os.unlink(path)  # stale: left by a milter that did not exit cleanly
    log.info("removed stale socket %s", path)
    return None


def set_socket_access(path: str, config: Config) -> None:
    """After bind: group and mode from [milter], so Postfix can connect."""
    if config.milter.socket_group:
        os.chown(path, -1, grp.getgrnam(config.milter.socket_group).gr_gid)
    os.chmod(path, config.milter.socket_mode)


def register(factory, actions: int) -> None:
    """Install pymilter's callbacks (as Milter.runmilter does) for ``factory``."""
    import Milter
    import milter

    Milter.factory = factory
    milter.set_flags(actions)
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.register(
        NAME,
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


def run(config: Config, store=None, ingest=None) -> int:
    """Serve until SIGTERM; returns a sysexits code (never 1).

    ``store`` and ``ingest`` default to ``Store.from_config(config)`` and
    ``postdesk.ingest.ingest``; tests and benchmarks may pass their own.
    """
    import Milter
    import milter

    from postdesk.milter import serial
    from postdesk.milter.app import action_names, actions_for, make_factory

    if store is None:
        from postdesk.store import Store

        try:
            store = Store.from_config(config)
        except Exception as e:
            # A store that cannot even be configured is a config problem; a
            # store that is merely down is not: the milter starts and
            # answers 451 until it is back.
            log.error("cannot set up the store %s: %s", redact_url(config.store.url), e)
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
    # Filter + store run on these threads, never on libmilter's (see make_factory).
    executor = ThreadPoolExecutor(max_workers=store_threads(config), thread_name_prefix="postdesk-store")
    register(make_factory(config, serial.for_milter(store, config.store.url), ingest, executor), actions)
    milter.setconn(address)
    milter.settimeout(config.milter.timeout)
    milter.setbacklog(BACKLOG)
    # An exception that escapes our own boundary still must not accept.
    milter.set_exception_policy(Milter.TEMPFAIL)
    try:
        milter.opensocket(False)
    except milter.error as e:
        log.error("cannot open milter socket %s: %s", address, e)
        return EX_UNAVAILABLE
    if path:
        try:
            set_socket_access(path, config)
        except OSError as e:
            log.error("cannot set owner/mode of %s: %s", path, e)
            return EX_UNAVAILABLE

    log.info(
        "starting: socket=%s mode=%s group=%s deliver=%s actions=%s timeout=%ds spool_memory=%d max_message_bytes=%d store=%s store_threads=%d pid=%d",
        address,
        f"{config.milter.socket_mode:04o}" if path else "-",
        config.milter.socket_group or "-",
        config.milter.deliver,
        action_names(actions),
        config.milter.timeout,
        config.milter.spool_memory,
        config.limits.max_message_bytes,
        redact_url(config.store.url),
        store_threads(config),
        os.getpid(),
    )
    status = EX_OK
    try:
        milter.main()
    except milter.error as e:
        log.error("milter stopped: %s", e)
        status = EX_SOFTWARE
    finally:
        executor.shutdown(wait=True)
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass
        close = getattr(store, "close", None) or getattr(store, "dispose", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.warning("closing the store failed", exc_info=True)
    log.info("stopped")
    return status
