"""A real, private Postfix instance for tests, the demo and ``bench/``.

Nothing here touches the system Postfix or port 25: every instance has its
own ``etc/``, queue and data directory, listens on a loopback high port and
relays everything to a local sink (``postdesk.testing.smtp.Sink``).

    from postdesk.testing.postfix import PrivatePostfix
    from postdesk.testing.smtp import Sink
    from postdesk.testing.wait import free_port

    sink = Sink().start()                      # aiosmtpd on 127.0.0.1:<free port>
    pf = PrivatePostfix(tmpdir, free_port(), sink.port, milter_socket="unix:/x/milter.sock")
    pf.start()
    try:
        smtplib.SMTP("127.0.0.1", pf.port).sendmail(...)
        sink.wait(1)
    finally:
        pf.stop(); sink.stop()

What a private instance needs (checked with Postfix 3.7 on Debian 12): its
own queue/data directories owned right, file logging (``maillog_file``)
because there may be no syslog, and chroot off in master.cf.  Postfix's
unprivileged processes (user ``postfix``) must reach the instance and any
milter socket, so both live in a ``shared_tmpdir()`` under /tmp, never under
the caller's directory (a checkout in root's home or a ``mktemp -d`` is
0700).  Requires root (Postfix's master runs as root and drops to
``mail_owner``); ``available()`` says whether it can run here and, if not,
what to do.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from postdesk.testing.wait import port_open, wait_for

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
DEBIAN_MASTER_CF = Path("/etc/postfix/master.cf")


def available() -> tuple[bool, str]:
    """(True, "") when a private Postfix can run here, else (False, why not)."""
    if os.geteuid() != 0:
        return False, "a private Postfix instance needs root: run this as root"
    if not os.path.exists(POSTFIX) or not os.path.exists(POSTCONF):
        return False, "postfix is not installed: as root, `make deps` (or apt-get install postfix) installs it"
    if not DEBIAN_MASTER_CF.exists():
        return False, f"{DEBIAN_MASTER_CF} is missing: reinstall the Debian postfix package (apt-get install --reinstall postfix)"
    return True, ""


def shared_tmpdir(prefix: str = "postdesk-") -> Path:
    """A fresh 0755 directory directly under /tmp (or $POSTDESK_SHARED_TMP).

    Postfix's unprivileged processes (user ``postfix``) must traverse every
    parent of the instance and of a milter socket.  pytest's ``tmp_path``
    lives under ``/tmp/pytest-of-root`` which pytest (re)sets to 0700 at the
    start of every session, also while another session's Postfix is running,
    so instances and sockets go here instead; so does a checkout under a 0700
    parent.  Remove it with ``shutil.rmtree`` when done
    (``PrivatePostfix.stop`` does for its own).
    """
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("POSTDESK_SHARED_TMP", "/tmp")))
    os.chmod(d, 0o755)
    _check_traversable(d)
    return d


def _check_traversable(path: Path) -> None:
    """Fail clearly unless user ``postfix`` can reach ``path``.

    Every ancestor needs o+x, else master fails with "open lock file ...
    Permission denied" and smtpd cannot open a milter socket.  We do not
    chmod someone's home to make it so: we say which directory is in the way.
    """
    for p in [path, *path.parents]:
        if not p.stat().st_mode & stat.S_IXOTH:
            raise RuntimeError(f"Postfix (user postfix) cannot enter {p} (mode {stat.S_IMODE(p.stat().st_mode):04o}): point POSTDESK_SHARED_TMP at a directory it can reach")


class PrivatePostfix:
    """A Postfix instance of its own: ``etc/``, ``spool/``, ``data/``, ``postfix.log``.

    ``port``: where its smtpd listens on 127.0.0.1.  ``relay_port``: where it
    relays every mail to (``relayhost = [127.0.0.1]:relay_port``; nothing is
    delivered locally: ``mydestination`` is empty).  ``milter_socket``: a
    Postfix milter address such as ``unix:/path/milter.sock`` (``None``: no
    milter).  ``milter_default_action`` is ``tempfail`` as in production.
    ``extra``: more main.cf settings.  ``services``: more master.cf text,
    appended as given (chroot off like the rest), e.g. the ``postdesk-lmtp``
    service of contrib/postfix/master-lmtp.cf with ``transport_maps`` in
    ``extra`` routing the support address to it.

    ``start()`` returns once smtpd accepts connections; ``stop()`` is safe to
    call twice and should be in a ``finally``.  ``reload()`` re-reads main.cf
    (after ``set_milter()`` or ``postconf()``).  ``log()`` is the instance's
    maillog file, ``mailq()`` the ``postqueue -p`` output, ``flush()`` retries
    deferred mail now.  The files are in ``root`` (a ``shared_tmpdir``);
    ``stop()`` copies the log to ``tmpdir/postfix.log`` and removes ``root``
    unless ``keep=True``.
    """

    def __init__(
        self,
        tmpdir,
        port: int,
        relay_port: int,
        milter_socket: str | None = None,
        extra: dict[str, str] | None = None,
        keep: bool = False,
        services: list[str] | None = None,
    ):
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
        self.services = list(services or [])
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
        for line in DEBIAN_MASTER_CF.read_text().splitlines() + "\n".join(self.services).splitlines():
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

    def start(self, timeout: float = 15.0) -> PrivatePostfix:
        ok, why = available()
        if not ok:
            raise RuntimeError(why)
        for d in (self.etc, self.spool, self.data):
            d.mkdir(parents=True, exist_ok=True)
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

    def reload(self, timeout: float = 15.0) -> None:
        """Re-read main.cf; returns once new connections get a fresh smtpd.

        ``postfix reload`` returns before anything happened.  The master
        logs "reload" when it has re-read its configuration; smtpd processes
        started before it keep the old settings until they exit (idle ones
        do at once, seeing the master close their status pipe; see
        master(8)).  So wait for that line, then for every smtpd that
        predates it to be gone: the next connection is served by one that
        read the new main.cf.
        """
        reloads = len(self._reload_lines())
        old = self._children("smtpd")
        r = self._postfix("reload")
        if r.returncode != 0:
            raise RuntimeError(f"postfix reload failed: {r.stdout}{r.stderr}")
        wait_for(lambda: len(self._reload_lines()) > reloads, timeout, "the master's reload log line")
        wait_for(lambda: not old & self._children("smtpd"), timeout, f"the smtpd processes from before the reload ({sorted(old)}) to exit")
        wait_for(lambda: port_open(self.port), timeout, f"postfix smtpd on 127.0.0.1:{self.port} after the reload")

    def _reload_lines(self) -> list[str]:
        return re.findall(r"/master\[\d+\]: reload ", self.log())

    def _master_pid(self) -> int | None:
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _children(self, name: str) -> set[int]:
        """Pids of the master's child processes called ``name`` (from /proc)."""
        master = self._master_pid()
        pids: set[int] = set()
        if master is None:
            return pids
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat_line = (d / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces, so split at the last ")".
            comm = stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")]
            ppid = int(stat_line[stat_line.rindex(")") + 2 :].split()[1])
            if ppid == master and comm == name:
                pids.add(int(d.name))
        return pids

    def stop(self) -> None:
        """Stop the master (if running) and, unless ``keep``, remove ``root``
        after copying the log to ``tmpdir/postfix.log``.  Safe to call twice,
        and after a failed ``start()``."""
        if self.running:
            r = self._postfix("stop")
            if r.returncode != 0:
                self._postfix("abort")
            pidfile = self.spool / "pid" / "master.pid"
            try:
                wait_for(lambda: not pidfile.exists() or not _pid_alive(pidfile), 10, "postfix master to exit")
            except TimeoutError:
                pass
            self.running = False
        if not self.keep and self.root.exists():
            # Keep the log next to the caller's files, drop the queue.
            for step in (lambda: shutil.copy(self.logfile, self.tmpdir / "postfix.log"), (self.tmpdir / "postfix").unlink):
                try:
                    step()
                except OSError:
                    pass
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostfix:
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
