"""Postfix-style logging for every postdesk process, where ops look.

Ops read postdesk's lines next to Postfix's own, so they look the same:
``postdesk/<component>[<pid>]: <message>``, with ``warning: `` and
``error: `` prefixes as Postfix's msg(3) writes them.  A traceback keeps the
prefix on every line, so grepping by ``postdesk/filter[123]`` finds all of it.

Where the lines go (``[log] target``):

- ``syslog``: one datagram per line to the local syslog socket
  (``[log] syslog_socket``, /dev/log), facility ``mail``, so they land in
  /var/log/mail.log (rsyslog) or among Postfix's lines in the journal.  No
  timestamp or host name: the syslog daemon adds both (RFC 3164 section 4.3.1
  lets a relay add what a local sender leaves out).
- ``stderr``: for a terminal, and for systemd units that prefer it.
- ``file:PATH``: appended with a timestamp and host name like Postfix's own
  ``maillog_file``; reopened when logrotate moves it (WatchedFileHandler).
- ``auto`` (the default): syslog when stderr is not a terminal, else
  stderr, as Postfix's daemons decide (they log to stderr only with -v on a
  terminal).  With no syslog socket at all, stderr.

Until the configuration is read (``setup``), lines go to stderr; ``configure``
then moves them to the target.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
import time
from typing import TextIO

_HANDLER_FLAG = "_postdesk_handler"
SYSLOG_SOCKET = "/dev/log"
LOG_MAIL = 2 << 3  # syslog(3) facility LOG_MAIL


class PostfixFormatter(logging.Formatter):
    """``postdesk/<component>[pid]: [warning: |error: ]message``."""

    def __init__(self, component: str, timestamps: bool = False) -> None:
        super().__init__()
        self.component = component
        self.timestamps = timestamps
        self.host = socket.gethostname().split(".")[0] if timestamps else ""

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
        if self.timestamps:
            # Postfix's maillog_file format: "Mmm dd hh:mm:ss host ident[pid]: ..."
            when = time.strftime("%b %d %H:%M:%S", time.localtime(record.created))
            prefix = f"{when} {self.host} {prefix}"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class SyslogLines(logging.Handler):
    """One syslog datagram per line, facility mail, to a unix datagram socket.

    ``<PRI>ident[pid]: message``: what syslog(3) sends, minus the timestamp
    the daemon adds.  A daemon restarted under us is reconnected once per
    record; a record that still cannot be sent is dropped, because logging
    must never turn a recorded message into a failure.
    """

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self.sock = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
        except OSError:
            sock.close()
            raise
        return sock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            pri = LOG_MAIL | self.PRIORITY.get(record.levelno, 6)
            datagrams = [f"<{pri}>{line}".encode("utf-8", "replace")[:8000] for line in self.format(record).splitlines()]
        except Exception:
            return
        for datagram in datagrams:
            try:
                self.sock.send(datagram)
            except OSError:
                try:
                    self.sock.close()
                    self.sock = self._connect()
                    self.sock.send(datagram)
                except OSError:
                    return

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            super().close()


def _level_number(level: str | int) -> int:
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    return level if isinstance(level, int) else logging.INFO


def _install(handlers: list[logging.Handler], level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_FLAG, False):
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        setattr(handler, _HANDLER_FLAG, True)
        root.addHandler(handler)
    root.setLevel(level)


def _syslog_handler(component: str, address: str) -> logging.Handler | None:
    try:
        handler = SyslogLines(address)
    except OSError:
        return None  # no syslog daemon listening
    handler.setFormatter(PostfixFormatter(component))
    return handler


def setup(component: str, level: str | int = "INFO", stream: TextIO | None = None, syslog: bool = False) -> logging.Logger:
    """Log to stderr (or ``stream``) in Postfix's format; returns the "postdesk" logger.

    Used before the configuration is known, and by the pipe filter: it
    collects its lines in ``stream`` and writes them after its DSN line,
    because pipe(8) only honours a ``5.x.x text`` status when it starts the
    command's output; ``syslog`` also sends each line to the syslog socket
    when one listens.  Calling setup again replaces the handlers.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(PostfixFormatter(component))
    handlers: list[logging.Handler] = [handler]
    if syslog:
        lines = _syslog_handler(component, SYSLOG_SOCKET)
        if lines is not None:
            handlers.append(lines)
    _install(handlers, _level_number(level))
    return logging.getLogger("postdesk")


def resolve_target(target: str, stderr: TextIO | None = None, daemon: bool = True) -> str:
    """``auto`` -> ``syslog`` or ``stderr``, as Postfix's daemons decide.

    A one-shot admin command (``ticket show``, ``check``) answers the person
    who typed it: ``auto`` is stderr for it, terminal or not.
    """
    if target != "auto":
        return target
    if not daemon:
        return "stderr"
    stream = stderr if stderr is not None else sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "stderr" if tty else "syslog"


def _target_handler(component: str, config, target: str) -> tuple[logging.Handler | None, str]:
    """The handler for a resolved ``syslog`` or ``file:PATH`` target, or
    (None, why not); None and no problem for ``stderr``."""
    if target == "syslog":
        handler = _syslog_handler(component, config.log.syslog_socket)
        if handler is None:
            return None, f"no syslog daemon listens on {config.log.syslog_socket}; logging to stderr"
        return handler, ""
    if target.startswith("file:"):
        path = target[len("file:"):]
        try:
            # 0640 whatever the umask: mail logs name customers.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            os.close(fd)
            file_handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        except OSError as e:
            return None, f"cannot open log file {path}: {e.strerror}; logging to stderr"
        file_handler.setFormatter(PostfixFormatter(component, timestamps=True))
        return file_handler, ""
    return None, ""


def configure(component: str, config, stderr: TextIO | None = None, daemon: bool = True) -> logging.Logger:
    """Send the lines where ``[log] target`` says, at ``[log] level``."""
    target = resolve_target(config.log.target, stderr, daemon)
    handler, problem = _target_handler(component, config, target)
    if handler is None:
        handler = logging.StreamHandler(stderr if stderr is not None else sys.stderr)
        handler.setFormatter(PostfixFormatter(component))
    _install([handler], _level_number(config.log.level))
    log = logging.getLogger("postdesk")
    if problem and config.log.target != "auto":
        log.warning("%s", problem)
    return log


def configure_held(component: str, config, held: TextIO) -> logging.Logger:
    """The pipe filter's logging once its configuration is read: every line
    into ``held`` (written after the DSN line, see ``setup``) and also to
    ``[log] target``: ``auto`` and ``syslog`` the socket of
    ``[log] syslog_socket`` (pipe(8) discards the output of a successful
    delivery, and ops look for the line in the mail log), ``file:PATH`` that
    file; ``stderr`` only ``held``."""
    stream = logging.StreamHandler(held)
    stream.setFormatter(PostfixFormatter(component))
    handlers: list[logging.Handler] = [stream]
    target = "syslog" if config.log.target == "auto" else config.log.target
    extra, problem = _target_handler(component, config, target)
    if extra is not None:
        handlers.append(extra)
    _install(handlers, _level_number(config.log.level))
    log = logging.getLogger("postdesk")
    if problem and config.log.target != "auto":
        log.warning("%s", problem.replace("logging to stderr", "logging to pipe(8) only"))
    return log
