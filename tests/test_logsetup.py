"""postdesk.logsetup: Postfix-style lines on stderr, and on syslog for the pipe."""

from __future__ import annotations

import io
import logging
import os
import re
import socket

import pytest

from postdesk import logsetup


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def test_lines_look_like_postfix():
    out = io.StringIO()
    log = logsetup.setup("filter", "INFO", stream=out)
    log.info("4BxT2k1Z3n: outcome=created")
    log.warning("slow")
    log.error("broken")
    log.debug("hidden at INFO")
    pid = os.getpid()
    assert out.getvalue().splitlines() == [
        f"postdesk/filter[{pid}]: 4BxT2k1Z3n: outcome=created",
        f"postdesk/filter[{pid}]: warning: slow",
        f"postdesk/filter[{pid}]: error: broken",
    ]


def test_traceback_lines_keep_the_prefix_and_setup_twice_does_not_double():
    out = io.StringIO()
    logsetup.setup("milter", "DEBUG", stream=out)
    log = logsetup.setup("milter", "DEBUG", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("Q1: unexpected")
    lines = out.getvalue().splitlines()
    assert all(re.match(r"postdesk/milter\[\d+\]: error: ", line) for line in lines), lines
    assert sum("Traceback" in line for line in lines) == 1
    assert lines[-1].endswith("ValueError: boom")


def test_syslog_gets_one_datagram_per_line(tmp_path, monkeypatch):
    path = str(tmp_path / "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", path)
    try:
        log = logsetup.setup("filter", "INFO", stream=io.StringIO(), syslog=True)
        log.info("Q2: outcome=created")
        log.warning("two\nlines")
        got = [server.recv(9000).decode() for _ in range(3)]
    finally:
        server.close()
    pid = os.getpid()
    # LOG_MAIL (2 << 3) | LOG_INFO (6) = 22; | LOG_WARNING (4) = 20.
    assert got == [f"<22>postdesk/filter[{pid}]: Q2: outcome=created", f"<20>postdesk/filter[{pid}]: warning: two", f"<20>postdesk/filter[{pid}]: warning: lines"]


def test_no_syslog_socket_is_fine(tmp_path, monkeypatch):
    monkeypatch.setattr(logsetup, "SYSLOG_SOCKET", str(tmp_path / "absent"))
    out = io.StringIO()
    logsetup.setup("filter", "INFO", stream=out, syslog=True).info("still logged")
    assert "still logged" in out.getvalue()


# --- [log] target -------------------------------------------------------------------


class _Log:
    """A [log] section stand-in for configure()."""

    def __init__(self, target: str, syslog_socket: str = "/nonexistent/log", level: str = "INFO") -> None:
        self.log = type("S", (), {"target": target, "syslog_socket": syslog_socket, "level": level})()


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _bound(tmp_path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "syslog")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    return server, path


def test_auto_is_syslog_without_a_terminal_and_stderr_on_one(tmp_path):
    assert logsetup.resolve_target("auto", _Stream(tty=False)) == "syslog"
    assert logsetup.resolve_target("auto", _Stream(tty=True)) == "stderr"
    assert logsetup.resolve_target("auto", _Stream(tty=False), daemon=False) == "stderr"
    assert logsetup.resolve_target("file:/x", _Stream(tty=True)) == "file:/x"


def test_syslog_target_sends_facility_mail_without_timestamp(tmp_path):
    server, path = _bound(tmp_path)
    err = _Stream(tty=False)
    try:
        log = logsetup.configure("notifier", _Log("auto", path), stderr=err)
        log.info("sent ack to <alice@customer.example>")
        log.error("smtp down")
        got = [server.recv(9000).decode() for _ in range(2)]
    finally:
        server.close()
    pid = os.getpid()
    assert got == [f"<22>postdesk/notifier[{pid}]: sent ack to <alice@customer.example>", f"<19>postdesk/notifier[{pid}]: error: smtp down"]
    assert err.getvalue() == ""  # not also on stderr


def test_explicit_syslog_without_a_daemon_falls_back_to_stderr_and_says_so(tmp_path):
    err = _Stream(tty=False)
    log = logsetup.configure("milter", _Log("syslog", str(tmp_path / "absent")), stderr=err)
    log.info("still here")
    text = err.getvalue()
    assert "no syslog daemon listens on" in text and "still here" in text


def test_file_target_has_timestamps_and_is_private(tmp_path):
    path = tmp_path / "postdesk.log"
    old = os.umask(0o022)
    try:
        log = logsetup.configure("milter", _Log(f"file:{path}"), stderr=_Stream(tty=True))
        log.warning("disk almost full")
    finally:
        os.umask(old)
    line = path.read_text().splitlines()[0]
    assert re.fullmatch(r"[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ postdesk/milter\[\d+\]: warning: disk almost full", line), line
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_a_real_notifier_process_logs_to_the_syslog_socket(tmp_path):
    """The service path: `postdesk notifier --once` with stderr not a terminal."""
    import subprocess
    import sys

    from cli_helpers import ROOT, clean_env, make_desk

    server, path = _bound(tmp_path)
    server.settimeout(10)
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", log={"syslog_socket": path})
    try:
        p = subprocess.run([sys.executable, "-m", "postdesk", "--config", str(desk.config), "notifier", "--once"], capture_output=True, cwd=ROOT, env=clean_env(), timeout=60)
        assert p.returncode == 0, p.stderr.decode()
        first = server.recv(9000).decode()
    finally:
        server.close()
    assert re.match(r"<2[0-3]>postdesk/notifier\[\d+\]: ", first), first
    assert p.stderr == b""


def test_the_pipe_filter_logs_to_the_configured_syslog_socket(tmp_path):
    """`postdesk filter` as pipe(8) runs it: its per-message line goes to
    [log] syslog_socket (not only /dev/log), and still after the status on stderr."""
    from cli_helpers import make_desk, make_mail

    server, path = _bound(tmp_path)
    server.settimeout(10)
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", log={"syslog_socket": path})
    try:
        p = desk.filter(make_mail(subject="Printer on fire"))
        assert p.returncode == 0, p.stderr.decode()
        lines = []
        while not any("outcome=created" in line for line in lines):
            lines.append(server.recv(9000).decode())
    finally:
        server.close()
    assert any(re.match(r"<22>postdesk/filter\[\d+\]: \S+: .*outcome=created", line) for line in lines), lines
    assert b"outcome=created" in p.stderr


def test_the_pipe_filter_with_target_stderr_logs_only_to_pipe8(tmp_path):
    server, path = _bound(tmp_path)
    server.settimeout(0.2)
    held = io.StringIO()
    try:
        logsetup.configure_held("filter", _Log("stderr", path), held).info("Q3: outcome=created")
        with pytest.raises(TimeoutError):
            server.recv(9000)
    finally:
        server.close()
    assert "Q3: outcome=created" in held.getvalue()
