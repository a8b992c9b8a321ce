"""The postdesk milter as a child process, for tests against a real Postfix.

libmilter allows one milter per process, so a test runs it the way
production does: ``python -m postdesk.milter --config FILE``, output to a log
file.  ``start()`` returns once the socket answers (the milter's own probe),
or fails with the log when the milter exited instead.

    milter = MilterProcess(config_path, socket_path, tmp_path / "milter.log").start()
    try:
        ...
    finally:
        milter.kill()
"""

from __future__ import annotations

import os
from pathlib import Path

from postdesk.testing.process import ServiceProcess
from postdesk.testing.wait import unix_socket_open, wait_for


class MilterProcess(ServiceProcess):
    """``python -m postdesk.milter --config config_path`` listening on ``socket_path``.

    ``postdesk.testing.lmtp.LmtpProcess`` is the same for ``postdesk.lmtp``
    (``module``, ``what`` and ``ready`` differ)."""

    module = "postdesk.milter"
    what = "milter"

    def __init__(self, config_path: str | os.PathLike, socket_path: str | os.PathLike, log_path: str | os.PathLike):
        super().__init__(config_path, log_path)
        self.socket_path = Path(socket_path)

    def start(self, timeout: float = 15.0) -> MilterProcess:
        """Start it; return once the socket answers.  RuntimeError (with the log) if it exited."""
        proc = self.spawn(self.module)
        wait_for(lambda: self.ready() or proc.poll() is not None, timeout, f"the {self.what} socket {self.socket_path}")
        if proc.poll() is not None:
            raise RuntimeError(f"the {self.what} exited {proc.returncode} before its socket answered:\n{self.text()}")
        return self

    def ready(self) -> bool:
        """Whether the socket answers (the milter's own start-up probe)."""
        return unix_socket_open(str(self.socket_path))
