"""Helpers to run a real, private Postfix and an SMTP sink (not a conftest).

Imported by the milter's integration tests, the notifier's tests, the demo
and ``bench/milter.py``.  Nothing here touches the system Postfix or port 25:
every instance has its own ``etc/``, queue and data directory, listens on a
loopback high port and relays everything to a local sink.

    from tests.postfix import PrivatePostfix, Sink, free_port, wait_for

    sink = Sink().start()                      # aiosmtpd on 127.0.0.1:<free port>
    pf = PrivatePostfix(tmpdir, free_port(), sink.port, milter_socket="unix:/x/milter.sock")
    pf.start()
    try:
        smtplib.SMTP("127.0.0.1", pf.port).sendmail(...)
        wait_for(lambda: len(sink.messages) == 1, 10, "mail at the sink")
    finally:
        pf.stop(); sink.stop()

What a private instance needs (checked with Postfix 3.7 on Debian 12): a private instance needs its own
queue/data directories owned right, file logging (``maillog_file``) because
there may be no syslog, and chroot off in master.cf.  Requires root (Postfix's
master runs as root and drops to ``mail_owner``); ``available()`` says whether
it can run here.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Callable

from postdesk.milter.server import socket_alive

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
DEBIAN_MASTER_CF = Path("/etc/postfix/master.cf")


def available() -> tuple[bool, str]:
    """(True, "") when a private Postfix can run here, else (False, why not)."""
    if os.geteuid() != 0:
        return False, "a private Postfix instance needs root"
    if not os.path.exists(POSTFIX) or not os.path.exists(POSTCONF):
        return False, "postfix is not installed (apt-get install postfix)"
    if not DEBIAN_MASTER_CF.exists():
        return False, f"{DEBIAN_MASTER_CF} missing (Debian postfix package expected)"
    return True, ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises ``TimeoutError`` naming ``what`` after ``timeout`` seconds.  Use it
    instead of sleeping: tests stay fast when things are fast.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# Whether a unix socket answers: the milter's own start-up probe.
unix_socket_open = socket_alive


def toml_dumps(data: dict[str, dict[str, Any]]) -> str:
    """A tiny TOML writer for postdesk configs (tables of str/int/float/bool/lists)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{value(str(k))} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {v!r} as TOML")

    out = []
    for section, values in data.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {value(v)}" for k, v in values.items())
        out.append("")
    return "\n".join(out)


def shared_tmpdir(prefix: str = "postdesk-") -> Path:
    """A fresh 0755 directory directly under /tmp (or $POSTDESK_SHARED_TMP).

    Postfix's unprivileged processes (user ``postfix``) must traverse every
    parent of the instance and of a milter socket.  pytest's ``tmp_path``
    lives under ``/tmp/pytest-of-root`` which pytest (re)sets to 0700 at the
    start of every session, also while another session's Postfix is running,
    so instances and sockets go here instead.  Remove it with
    ``shutil.rmtree`` when done (``PrivatePostfix.stop`` does for its own).
    """
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("POSTDESK_SHARED_TMP", "/tmp")))
    os.chmod(d, 0o755)
    _make_traversable(d)
    return d


def _make_traversable(path: Path) -> None:
    """Postfix's unprivileged processes must reach the instance directory.

    ``mkdtemp`` and pytest make 0700 directories; add o+x (not read) to each
    ancestor that lacks it, else master fails with "open lock file ...
    Permission denied".
    """
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


class PrivatePostfix:
    """A Postfix instance of its own: ``etc/``, ``spool/``, ``data/``, ``postfix.log``.

    ``port``: where its smtpd listens on 127.0.0.1.  ``relay_port``: where it
    relays every mail to (``relayhost = [127.0.0.1]:relay_port``; nothing is
    delivered locally: ``mydestination`` is empty).  ``milter_socket``: a
    Postfix milter address such as ``unix:/path/milter.sock`` (``None``: no
    milter).  ``milter_default_action`` is ``tempfail`` as in production.
    ``extra``: more main.cf settings.

    ``start()`` returns once smtpd accepts connections; ``stop()`` is safe to
    call twice and should be in a ``finally``.  ``reload()`` re-reads main.cf
    (after ``set_milter()`` or ``postconf()``).  ``log()`` is the instance's
    maillog file, ``mailq()`` the ``postqueue -p`` output, ``flush()`` retries
    deferred mail now.  The files are in ``root`` (a ``shared_tmpdir``);
    ``stop()`` copies the log to ``tmpdir/postfix.log`` and removes ``root``
    unless ``keep=True``.
    """

    def __init__(self, tmpdir, port: int, relay_port: int, milter_socket: str | None = None, extra: dict[str, str] | None = None, keep: bool = False):
        # The instance itself lives in shared_tmpdir() (see there why);
        # ``tmpdir/postfix`` is a symlink to it, for looking at after a test.
        self.tmpdir = Path(tmpdir)
        self.root = shared_tmpdir("postdesk-postfix-")
        self.keep = keep
        try:
            self.tmpdir.mkdir(parents=True, exist_ok=True)
            link = self.tmpdir / "postfix"
            if not link.exists() and not link.is_symlink():
                link.symlink_to(self.root)
        except OSError:
            pass
        self.port = port
        self.relay_port = relay_port
        self.milter_socket = milter_socket
        self.extra = dict(extra or {})
        self.etc = self.root / "etc"
        self.spool = self.root / "spool"
        self.data = self.root / "data"
        self.logfile = self.root / "postfix.log"
        self.running = False

    # -- configuration --------------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postdesk-test.localdomain",
            "mydomain": "localdomain",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "local_recipient_maps": "",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            # File logging: there may be no syslog; postfix start fails
            # silently without the prefixes (Postfix 3.7).
            "maillog_file": str(self.logfile),
            "maillog_file_prefixes": f"{self.root}, /tmp, /var",
            "syslog_name": f"postfix-{self.port}",
            # Retry deferred mail quickly: tests wait for redelivery.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "smtpd_milters": self.milter_socket or "",
            "non_smtpd_milters": "",
            "smtpd_peername_lookup": "no",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "in_flow_delay": "0",
            "message_size_limit": str(64 * 1024 * 1024),
        }
        settings.update(self.extra)
        return settings

    def _write_master_cf(self) -> None:
        lines = []
        for line in DEBIAN_MASTER_CF.read_text().splitlines():
            fields = line.split()
            if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
                if fields[0] in ("smtp", "submission", "smtps") and fields[1] == "inet":
                    continue
                fields[4] = "n"  # no chroot: it would need a populated queue directory
                line = "  ".join(fields)
            lines.append(line)
        lines.append(f"127.0.0.1:{self.port}  inet  n  -  n  -  -  smtpd")
        (self.etc / "master.cf").write_text("\n".join(lines) + "\n")

    def postconf(self, **settings: str) -> None:
        """Set main.cf parameters (``postconf -e``); call ``reload()`` after."""
        args = [f"{k}={v}" for k, v in settings.items()]
        subprocess.run([POSTCONF, "-c", str(self.etc), "-e", *args], check=True, capture_output=True)

    def set_milter(self, milter_socket: str | None, reload: bool = True) -> None:
        """Attach (``unix:/path``) or detach (``None``) the milter."""
        self.milter_socket = milter_socket
        self.postconf(smtpd_milters=milter_socket or "")
        if reload and self.running:
            self.reload()

    # -- life cycle -------------------------------------------------------------

    def _postfix(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([POSTFIX, "-c", str(self.etc), *args], capture_output=True, text=True)

    def start(self, timeout: float = 15.0) -> "PrivatePostfix":
        ok, why = available()
        if not ok:
            raise RuntimeError(why)
        for d in (self.etc, self.spool, self.data):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        _make_traversable(self.root)
        shutil.chown(self.data, "postfix", "postfix")
        (self.etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in self.main_cf().items()))
        self._write_master_cf()
        # Creates the queue subdirectories with the right owners.
        r = subprocess.run([POSTFIX, "-c", str(self.etc), "set-permissions"], capture_output=True, text=True)
        if r.returncode != 0:
            # set-permissions wants the Debian postfix-files; fall back to check.
            subprocess.run([POSTFIX, "-c", str(self.etc), "check"], capture_output=True, text=True)
        r = self._postfix("start")
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed ({r.returncode}): {r.stdout}{r.stderr}{self.log()[-2000:]}")
        self.running = True
        try:
            wait_for(lambda: port_open(self.port), timeout, f"postfix smtpd on 127.0.0.1:{self.port}")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"postfix did not listen on {self.port}: {self.log()[-2000:]}") from None
        return self

    def reload(self, settle: float = 1.0) -> None:
        """Re-read main.cf; idle smtpd processes pick it up within ``settle`` s."""
        r = self._postfix("reload")
        if r.returncode != 0:
            raise RuntimeError(f"postfix reload failed: {r.stdout}{r.stderr}")
        time.sleep(settle)

    def stop(self) -> None:
        if not self.running:
            return
        r = self._postfix("stop")
        if r.returncode != 0:
            self._postfix("abort")
        pidfile = self.spool / "pid" / "master.pid"
        try:
            wait_for(lambda: not pidfile.exists() or not _pid_alive(pidfile), 10, "postfix master to exit")
        except TimeoutError:
            pass
        self.running = False
        if not self.keep:
            # Keep the log next to the test's files, drop the queue.
            try:
                shutil.copy(self.logfile, self.tmpdir / "postfix.log")
                (self.tmpdir / "postfix").unlink()
            except OSError:
                pass
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PrivatePostfix":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inspection -------------------------------------------------------------

    def log(self) -> str:
        """The instance's maillog (after ``stop()``: the copy in ``tmpdir``)."""
        for f in (self.logfile, self.tmpdir / "postfix.log"):
            try:
                return f.read_text(errors="replace")
            except FileNotFoundError:
                continue
        return ""

    def mailq(self) -> str:
        return subprocess.run([POSTQUEUE, "-c", str(self.etc), "-p"], capture_output=True, text=True).stdout

    def queue_empty(self) -> bool:
        return "Mail queue is empty" in self.mailq()

    def flush(self) -> None:
        """Retry deferred mail now (``postqueue -f``)."""
        subprocess.run([POSTQUEUE, "-c", str(self.etc), "-f"], capture_output=True)


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


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
    def __init__(self, sink: "Sink"):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        self.sink._add(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
        return "250 2.0.0 OK stored"


class Sink:
    """An aiosmtpd server on 127.0.0.1 that keeps every mail it receives.

    ``messages`` is the list of ``Received`` (sender, recipients, data,
    ``.message`` parsed); with ``directory`` each mail is also written there
    as ``NNNN.eml``.  ``wait(n, timeout)`` waits until ``n`` mails arrived.
    """

    def __init__(self, port: int | None = None, directory: str | os.PathLike | None = None):
        self.port = port or free_port()
        self.directory = Path(directory) if directory else None
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._controller = None

    def _add(self, received: Received) -> None:
        with self._lock:
            self.messages.append(received)
            n = len(self.messages)
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"{n:04d}.eml").write_bytes(received.data)

    def start(self) -> "Sink":
        from aiosmtpd.controller import Controller

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

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
