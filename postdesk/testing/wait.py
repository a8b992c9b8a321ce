"""Waiting on events instead of sleeping, and the probes to wait with.

``wait_for(predicate, timeout, what)`` polls until ``predicate()`` is truthy
and names ``what`` when it gives up: a test is as fast as the thing it waits
for, and a failure says what never happened.  ``port_open`` and
``unix_socket_open`` are the usual predicates; ``free_port`` picks a
loopback port for a server about to start.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from postdesk.milter.server import socket_alive


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises ``TimeoutError`` naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# Whether a unix socket answers: the milter's own start-up probe, so a test
# waits for exactly what the milter checks before it refuses a second start.
unix_socket_open: Callable[[str], bool] = socket_alive
