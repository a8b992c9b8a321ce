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
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import postdesk
from postdesk.testing.wait import unix_socket_open, wait_for

# The child imports the same postdesk as this process (a checkout on
# PYTHONPATH or an installed copy), not whatever its cwd holds.
_PACKAGE_PARENT = str(Path(postdesk.__file__).resolve().parent.parent)


class MilterProcess:
    """``python -m postdesk.milter --config config_path`` listening on ``socket_path``.

    ``postdesk.testing.lmtp.LmtpProcess`` is the same for ``postdesk.lmtp``
    (``module``, ``what`` and ``ready`` differ)."""

    module = "postdesk.milter"
    what = "milter"

    def __init__(self, config_path: str | os.PathLike, socket_path: str | os.PathLike, log_path: str | os.PathLike):
        self.config_path = Path(config_path)
        self.socket_path = Path(socket_path)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 15.0) -> MilterProcess:
        """Start it; return once the socket answers.  RuntimeError (with the log) if it exited."""
        self._log = open(self.log_path, "ab")
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=_PACKAGE_PARENT + (os.pathsep + path if path else ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--config", str(self.config_path)],
            stdout=self._log, stderr=self._log, env=env,
        )
        proc = self.proc
        wait_for(lambda: self.ready() or proc.poll() is not None, timeout, f"the {self.what} socket {self.socket_path}")
        if proc.poll() is not None:
            self._close_log()
            raise RuntimeError(f"the {self.what} exited {proc.returncode} before its socket answered:\n{self.text()}")
        return self

    def ready(self) -> bool:
        """Whether the socket answers (the milter's own start-up probe)."""
        return unix_socket_open(str(self.socket_path))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def kill(self) -> None:
        """SIGKILL: gone at once (libmilter can take seconds to act on SIGTERM)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: the exit status, or None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self._close_log()
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self._close_log()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        """What the milter logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
