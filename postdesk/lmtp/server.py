"""``postdesk lmtp``: listen on ``[lmtp] listen``, serve until SIGTERM.

- ``unix:PATH``: a stale socket left by a crash is removed (a live one is
  not: another server answers there); the socket is created under a umask
  that leaves it private, then given ``[lmtp] socket_group`` and
  ``socket_mode``, so it is never more open than configured, whatever the
  umask of whoever started us.  XFORWARD is taken here only.
- ``HOST:PORT``: TCP, for a Postfix on another host; no XFORWARD.
- ingest (parsing and DNS, then the store) runs on worker threads, never
  on the event loop; the store part goes to the writer threads of
  ``postdesk.store.groupcommit``, as the milter's does.
- SIGTERM/SIGINT/SIGHUP: stop listening (the socket file goes), answer
  ``421 4.3.2`` to the idle sessions, let the ones recording a message
  reply (at most ``DRAIN_SECONDS``), close the store.  Postfix retries what
  was not answered; a message committed but not answered comes back and is
  recorded once (same Message-ID).
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from postdesk.config import Config, redact_url
from postdesk.lmtp.protocol import Handler, LMTPSession, Sessions
from postdesk.milter.server import DRAIN_SECONDS, STOP_SIGNALS, prepare_socket
from postdesk.outcomes import EX_CONFIG, EX_OK, EX_UNAVAILABLE

if TYPE_CHECKING:
    from postdesk.ingest import MessageStore

log = logging.getLogger("postdesk")

# Parsing and the DNS of SPF/DKIM/DMARC wait on these threads; the store
# part of each waits for its batch (postdesk.store.groupcommit).  Postfix's
# lmtp(8) opens at most default_process_limit (100) sessions; 8 keeps DNS
# waits overlapping.
WORKER_THREADS = 8


def split_listen(address: str) -> tuple[str | None, tuple[str, int] | None]:
    """``unix:PATH`` -> (PATH, None); ``HOST:PORT`` or ``[V6]:PORT`` -> (None, (HOST, PORT))."""
    if address.startswith("unix:"):
        return address[len("unix:"):], None
    host, _, port = address.rpartition(":")
    return None, (host.strip("[]") or "127.0.0.1", int(port))


async def serve(
    config: Config,
    handler: Handler,
    drain: float = DRAIN_SECONDS,
    ready: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Listen, serve until a stop signal (or ``stop`` is set: then no
    signal handlers, for a server on a thread), drain; returns a sysexits code."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command INFO lines
    loop = asyncio.get_running_loop()
    path, hostport = split_listen(config.lmtp.listen)
    sessions = Sessions()
    hostname = socket.gethostname()

    def factory() -> LMTPSession:
        return LMTPSession(handler, sessions, xforward=path is not None, hostname=hostname, ident="postdesk", loop=loop)

    if path is not None:
        problem = prepare_socket(path, "postdesk lmtp", "[lmtp] listen")
        if problem:
            log.error("%s", problem)
            return EX_UNAVAILABLE
        # Private from the first moment: bind under umask 0177 (0600), then
        # open it to the group as configured.  umask is per process; nothing
        # else creates files while we start.
        old = os.umask(0o177)
        try:
            server = await loop.create_unix_server(factory, path)
        finally:
            os.umask(old)
        try:
            if config.lmtp.socket_group:
                os.chown(path, -1, grp.getgrnam(config.lmtp.socket_group).gr_gid)
            os.chmod(path, config.lmtp.socket_mode)
        except (OSError, KeyError) as e:
            log.error("cannot set group/mode of %s: %s", path, e)
            server.close()
            _unlink(path)
            return EX_UNAVAILABLE
    else:
        assert hostport is not None
        server = await loop.create_server(factory, hostport[0], hostport[1], reuse_address=True)

    signals = stop is None
    stopped = stop or asyncio.Event()
    def on_signal(signum: int) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stopped.set()

    if signals:
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)
    log.info(
        "starting: listen=%s mode=%s group=%s xforward=%s max_message_bytes=%d store=%s workers=%d pid=%d",
        config.lmtp.listen,
        f"{config.lmtp.socket_mode:04o}" if path else "-",
        (config.lmtp.socket_group or "-") if path else "-",
        "yes" if path else "no",
        config.limits.max_message_bytes,
        redact_url(config.store.url),
        WORKER_THREADS,
        os.getpid(),
    )
    if ready is not None:
        ready()
    try:
        await stopped.wait()
    finally:
        if signals:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        server.close()  # no new sessions: Postfix defers to us until we are back
        if path is not None:
            _unlink(path)
        left = await sessions.stop(drain)
        if left:
            log.warning("%d LMTP session(s) still recording after %.0fs; Postfix defers their mail", left, drain)
        await server.wait_closed()
    return EX_OK


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def run(config: Config, store: MessageStore | None = None, ingest: Callable | None = None) -> int:
    """Serve until SIGTERM; returns a sysexits code (never 1).

    ``store`` and ``ingest`` default to ``Store.from_config(config)`` and
    ``postdesk.ingest.ingest``; tests and benchmarks may pass their own.
    """
    from postdesk.store.groupcommit import GroupCommit, writers_for

    if config.lmtp.socket_group:
        try:
            grp.getgrnam(config.lmtp.socket_group)
        except KeyError:
            log.error("lmtp.socket_group: no group %r on this system", config.lmtp.socket_group)
            return EX_CONFIG
    if store is None:
        from postdesk.store import Store

        store = Store.for_service(config)
        if store is None:
            return EX_CONFIG
    if ingest is None:
        from postdesk.ingest import ingest as default_ingest  # fail at start-up, not per message

        ingest = default_ingest
    executor = ThreadPoolExecutor(max_workers=WORKER_THREADS, thread_name_prefix="postdesk-lmtp")
    writer = GroupCommit(store, writers_for(config.store.url))
    handler = Handler(config, writer, ingest, executor)
    try:
        status = asyncio.run(serve(config, handler))
    except OSError as e:
        log.error("cannot listen on %s: %s", config.lmtp.listen, e)
        status = EX_UNAVAILABLE
    finally:
        executor.shutdown(wait=True)
        try:
            writer.close()  # what is queued is committed first
        except Exception:
            log.warning("closing the store failed", exc_info=True)
    log.info("stopped")
    return status
