"""Postfix-style logging for every postdesk process.

Ops read postdesk's lines next to Postfix's own, so they look the same:
``postdesk/<component>[<pid>]: <message>``, with ``warning: `` and
``error: `` prefixes as Postfix's msg(3) writes them.  Everything goes to
stderr: systemd's journal picks it up for the milter and the notifier, and
pipe(8) captures it for ``postdesk filter`` (and quotes it in a defer or
bounce reason).  A traceback keeps the prefix on every line, so grepping a
process's lines by ``postdesk/filter[123]`` finds all of it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

_HANDLER_FLAG = "_postdesk_handler"
SYSLOG_SOCKET = "/dev/log"


class PostfixFormatter(logging.Formatter):
    """``postdesk/<component>[pid]: [warning: |error: ]message``."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        if record.levelno >= logging.ERROR:
            severity = "error: "
        elif record.levelno >= logging.WARNING:
            severity = "warning: "
        else:
            severity = ""
        # record.process, not os.getpid() at setup time: right after a fork too.
        prefix = f"postdesk/{self.component}[{record.process or os.getpid()}]: {severity}"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class _SyslogLines(logging.Handler):
    """One syslog record per line, facility mail, straight to /dev/log.

    Used by the pipe filter only: pipe(8) shows a command's output only in a
    defer or bounce reason, so without this the per-message line would never
    reach the mail log on success.  The milter and the notifier run under
    systemd, whose journal already takes their stderr.
    """

    LOG_MAIL = 2 << 3  # syslog(3) facility LOG_MAIL
    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def __init__(self, address: str) -> None:
        super().__init__()
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.connect(address)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            pri = self.LOG_MAIL | self.PRIORITY.get(record.levelno, 6)
            for line in self.format(record).splitlines():
                self.sock.send(f"<{pri}>{line}".encode("utf-8", "replace")[:8000])
        except Exception:
            pass  # logging must never turn a delivered message into a failure

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            super().close()


def setup(component: str, level: str | int = "INFO", stream: TextIO | None = None, syslog: bool = False) -> logging.Logger:
    """Send all logging to stderr in Postfix's format; returns the "postdesk" logger.

    ``stream`` replaces stderr: the pipe filter collects its lines and writes
    them after its DSN line, because pipe(8) only honours a ``5.x.x text``
    status when it starts the command's output (stdout and stderr share one
    pipe there).  ``syslog`` also sends each line to /dev/log (facility
    mail) when that socket exists.  Calling setup again replaces the handlers
    instead of adding more.
    """
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_FLAG, False):
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_FLAG, True)
    handler.setFormatter(PostfixFormatter(component))
    root.addHandler(handler)
    if syslog and os.path.exists(SYSLOG_SOCKET):
        try:
            lines = _SyslogLines(SYSLOG_SOCKET)
        except OSError:
            pass  # no syslog daemon listening: stderr is enough
        else:
            setattr(lines, _HANDLER_FLAG, True)
            lines.setFormatter(PostfixFormatter(component))
            root.addHandler(lines)
    root.setLevel(level)
    return logging.getLogger("postdesk")


def set_level(level: str | int) -> None:
    """Change the level once the configuration is known."""
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if isinstance(level, int):
        logging.getLogger().setLevel(level)
