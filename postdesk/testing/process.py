"""A postdesk service as a child process, for tests, the demo and ``bench/``.

``python -m MODULE --config FILE [ARGS]`` with stdout and stderr appended to
a log file, importing the same postdesk as this process (a checkout on
PYTHONPATH or an installed copy), not whatever its working directory holds.
``postdesk.testing.milter.MilterProcess`` (and its LMTP twin) waits for a
socket on top of this; ``postdesk.testing.hosts.NotifierProcess`` does not.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import postdesk

PACKAGE_PARENT = str(Path(postdesk.__file__).resolve().parent.parent)


class ServiceProcess:
    """One child process; ``stop`` is SIGTERM and wait, ``kill`` is SIGKILL."""

    def __init__(self, config_path: str | os.PathLike, log_path: str | os.PathLike):
        self.config_path = Path(config_path)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None

    def spawn(self, module: str, *args: str) -> subprocess.Popen:
        """Start ``python -m module --config FILE args``."""
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + (os.pathsep + path if path else ""))
        argv: Sequence[str] = [sys.executable, "-m", module, "--config", str(self.config_path), *args]
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        return self.proc

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: gone at once (libmilter can take seconds to act on SIGTERM)."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (the service finishes what is in flight) and wait: the
        exit status, or None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def text(self) -> str:
        """What it logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
