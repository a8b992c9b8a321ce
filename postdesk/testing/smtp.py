"""An SMTP sink that keeps every mail it receives (aiosmtpd on loopback).

The far end of a private Postfix's relay in tests and the demo: ``Sink`` is
an aiosmtpd server on 127.0.0.1 whose ``messages`` are ``Received`` records
(envelope and the raw bytes as they arrived, ``.message`` parsed).

    with Sink() as sink:                       # 127.0.0.1:<free port>
        ...                                    # relay to sink.port
        (mail,) = sink.wait(1)

Needs aiosmtpd, from the ``test`` extra (``pip install 'postdesk[test]'``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

try:
    from aiosmtpd.controller import Controller
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError("postdesk.testing.smtp needs aiosmtpd: pip install 'postdesk[test]'") from e

from postdesk.testing.wait import free_port, wait_for


@dataclass
class Received:
    """One mail as the sink got it."""

    sender: str
    recipients: list[str]
    data: bytes
    received_at: float = field(default_factory=time.time)

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.data)

    def header(self, name: str) -> str | None:
        """The raw (undecoded) value of the first ``name`` header."""
        msg = BytesParser(policy=policy.compat32).parsebytes(self.data, headersonly=True)
        v = msg.get(name)
        return None if v is None else str(v)


class _SinkHandler:
    def __init__(self, sink: Sink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        # Recorded before the 250: once the sender has its reply, the mail is in ``messages``.
        self.sink._add(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)  # a slow server: a crash test's window to kill the sender in
        return "250 2.0.0 OK stored"


class Sink:
    """An aiosmtpd server on 127.0.0.1 that keeps every mail it receives.

    ``messages`` is the list of ``Received``; with ``directory`` each mail is
    also written there as ``NNNN.eml``.  ``wait(n, timeout)`` waits until
    ``n`` mails arrived.  ``start()``/``stop()`` or a ``with`` block.
    ``delay``: seconds between keeping a mail and answering 250.
    """

    def __init__(self, port: int | None = None, directory: str | os.PathLike | None = None, delay: float = 0.0):
        self.port = port or free_port()
        self.delay = delay  # seconds between keeping a mail and its 250
        self.directory = Path(directory) if directory else None
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def _add(self, received: Received) -> None:
        with self._lock:
            self.messages.append(received)
            n = len(self.messages)
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"{n:04d}.eml").write_bytes(received.data)

    def start(self) -> Sink:
        self._controller = Controller(_SinkHandler(self), hostname="127.0.0.1", port=self.port, data_size_limit=None)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def wait(self, count: int, timeout: float = 15.0) -> list[Received]:
        wait_for(lambda: len(self.messages) >= count, timeout, f"{count} mail(s) at the sink (have {len(self.messages)})")
        return list(self.messages)

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
