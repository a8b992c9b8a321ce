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
