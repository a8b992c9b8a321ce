"""``postdesk lmtp`` for tests and benchmarks: on a thread, or as a child process.

    server = LmtpServer(config, store).start()     # in this process, its own event loop
    replies = lmtp_send(server.listen, "a@b.example", ["support@example.com"], raw)
    server.stop()

    proc = LmtpProcess(config_path, "unix:/x/lmtp.sock", tmp_path / "lmtp.log").start()
    ...                                            # Postfix's lmtp(8) delivers to it
    proc.kill()                                    # or stop(): SIGTERM, drain, exit 0

``lmtp_send`` is a small LMTP client that returns every reply, one per
recipient after DATA (RFC 2033 4.2); smtplib.LMTP reads only the first.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Sequence

from postdesk.testing.milter import MilterProcess
from postdesk.testing.wait import port_open, unix_socket_open, wait_for


def _target(listen: str) -> tuple[int, str | tuple[str, int]]:
    if listen.startswith("unix:"):
        return socket.AF_UNIX, listen[5:]
    host, _, port = listen.rpartition(":")
    return socket.AF_INET, (host.strip("[]") or "127.0.0.1", int(port))


def listening(listen: str) -> bool:
    family, target = _target(listen)
    if family == socket.AF_UNIX:
        assert isinstance(target, str)
        return unix_socket_open(target)
    assert isinstance(target, tuple)
    return port_open(target[1], target[0])


class LmtpServer:
    """``postdesk.lmtp.server.serve`` on a thread with its own event loop."""

    def __init__(self, config, store, ingest: Callable | None = None, drain: float = 5.0, workers: int = 4):
        from concurrent.futures import ThreadPoolExecutor

        from postdesk.lmtp.protocol import Handler
        from postdesk.store.groupcommit import GroupCommit, writers_for

        if ingest is None:
            from postdesk.ingest import ingest as default_ingest

            ingest = default_ingest
        self.config = config
        self.listen = config.lmtp.listen
        self.drain = drain
        self.executor = ThreadPoolExecutor(max_workers=workers)
        self.writer = GroupCommit(store, writers_for(config.store.url))
        self.handler = Handler(config, self.writer, ingest, self.executor)
        self.status: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lmtp-server", daemon=True)

    def _run(self) -> None:
        from postdesk.lmtp.server import serve

        async def main() -> int:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            return await serve(self.config, self.handler, drain=self.drain, ready=self._ready.set, stop=self._stop)

        try:
            self.status = asyncio.run(main())
        finally:
            self._ready.set()

    def start(self, timeout: float = 10.0) -> LmtpServer:
        self._thread.start()
        if not self._ready.wait(timeout) or self.status is not None:
            raise RuntimeError(f"postdesk lmtp did not start (status {self.status})")
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self.executor.shutdown(wait=True)
        self.writer.stop()  # the caller's store stays open
        return self.status


class LmtpProcess(MilterProcess):
    """``python -m postdesk.lmtp --config config_path`` listening on ``listen``."""

    module = "postdesk.lmtp"
    what = "lmtp"

    def __init__(self, config_path: str | os.PathLike, listen: str, log_path: str | os.PathLike):
        super().__init__(config_path, listen[5:] if listen.startswith("unix:") else listen, log_path)
        self.listen = listen

    def ready(self) -> bool:
        return listening(self.listen)


class LmtpClient:
    """A blocking LMTP client that reads every reply (for tests)."""

    def __init__(self, listen: str, timeout: float = 30.0):
        family, target = _target(listen)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(target)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> str:
        """One reply, multi-line replies joined with newlines."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return self.reply()

    def data(self, raw: bytes, recipients: int) -> list[str]:
        """DATA, the dot-stuffed message; one reply per accepted recipient."""
        first = self.command("DATA")
        if not first.startswith("354"):
            return [first]
        body = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        body = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in body.split(b"\r\n"))
        self.sock.sendall(body + b".\r\n")
        return [self.reply() for _ in range(recipients)]

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except OSError:
            pass
        finally:
            self.file.close()
            self.sock.close()


def lmtp_send(listen: str, sender: str, recipients: Sequence[str], raw: bytes, xforward: str | None = None) -> list[str]:
    """One transaction; the RCPT replies of refused recipients, then one
    reply per accepted recipient after DATA (or the DATA refusal)."""
    c = LmtpClient(listen)
    try:
        c.command("LHLO test.example")
        if xforward:
            r = c.command(f"XFORWARD {xforward}")
            if not r.startswith("250"):
                return [r]
        r = c.command(f"MAIL FROM:<{sender}>")
        if not r.startswith("250"):
            return [r]
        refused, accepted = [], 0
        for rcpt in recipients:
            r = c.command(f"RCPT TO:<{rcpt}>")
            if r.startswith("250"):
                accepted += 1
            else:
                refused.append(r)
        if not accepted:
            return refused
        return refused + c.data(raw, accepted)
    finally:
        c.close()


def wait_listening(listen: str, timeout: float = 10.0) -> None:
    wait_for(lambda: listening(listen), timeout, f"postdesk lmtp on {listen}")
