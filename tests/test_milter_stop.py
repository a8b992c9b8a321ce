"""The milter stops within a second of SIGTERM and can start again at once.

A real ``postdesk milter`` process on a unix socket; the clock starts when
the signal is sent and stops when the process has exited (its socket is
gone by then).  libmilter alone takes up to 5 s (its listener's poll).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import ROOT, clean_env, make_desk

from postdesk.milter.server import socket_alive

STOP_WITHIN = 1.0


def start(desk, sock):
    proc = subprocess.Popen([sys.executable, "-m", "postdesk", "--config", str(desk.config), "milter"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=clean_env())
    deadline = time.monotonic() + 20
    while not socket_alive(str(sock), timeout=0.2):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the milter did not listen within 20 s"
        time.sleep(0.02)
    return proc


def stop(proc) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    return rc, time.monotonic() - t0


def test_sigterm_stops_within_a_second_and_a_restart_succeeds(tmp_path):
    sock = tmp_path / "milter.sock"
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", milter={"socket": f"unix:{sock}", "socket_group": ""}, log={"target": "stderr"})
    proc = start(desk, sock)
    rc, elapsed = stop(proc)
    err = proc.stderr.read().decode()
    assert rc == 0, err
    assert elapsed < STOP_WITHIN, f"stopped after {elapsed:.2f}s\n{err}"
    assert "SIGTERM: stopping" in err and "stopped" in err  # also when it came during start-up
    assert not sock.exists()
    # Right away: no "another milter is already listening".
    again = start(desk, sock)
    rc, elapsed = stop(again)
    err = again.stderr.read().decode()
    assert rc == 0 and "already listening" not in err, err
    assert elapsed < STOP_WITHIN, f"second stop after {elapsed:.2f}s"


def test_an_idle_connection_does_not_hold_the_stop(tmp_path):
    """A connection that never speaks (a probe, an idle MTA connection)
    holds the stop for at most libmilter's worker pool poll (about 1 s,
    measured 1.1 s here), never the session timeout ([milter] timeout)."""
    import socket

    sock = tmp_path / "milter.sock"
    desk = make_desk(tmp_path / "desk", f"sqlite:///{tmp_path}/desk/postdesk.db", milter={"socket": f"unix:{sock}", "socket_group": ""}, log={"target": "stderr"})
    proc = start(desk, sock)
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(str(sock))  # connected, never says CONNECT: not a session to wait for
    try:
        rc, elapsed = stop(proc)
    finally:
        idle.close()
    assert rc == 0 and elapsed < 2 * STOP_WITHIN, (rc, elapsed, proc.stderr.read().decode())


@pytest.mark.parametrize("service", ["milter", "lmtp"])
def test_a_store_that_cannot_be_set_up_stops_the_service_with_78(make_config, caplog, service):
    """A store URL no driver can take is a config problem (EX_CONFIG, one
    ERROR line naming the store without its password); nothing is listening."""
    from importlib import import_module

    server = import_module(f"postdesk.{service}.server")
    config = make_config("postgresql+nosuchdriver://postdesk:secret@127.0.0.1/desk")
    assert server.run(config) == 78
    line = next(r.getMessage() for r in caplog.records if "cannot set up the store" in r.getMessage())
    assert "nosuchdriver" in line and "secret" not in line
