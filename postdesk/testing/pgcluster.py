"""A private PostgreSQL cluster for tests that stop and start the database.

Never the machine's PostgreSQL: ``initdb`` in a fresh directory, its own
port on 127.0.0.1, its own socket directory, trust authentication, run as
the ``postgres`` user (PostgreSQL refuses root).  ``stop()``/``start()``
make "the database went away and came back" real for a test; ``close()``
stops it and removes the directory.

    pg = PrivatePostgres().start()
    url = pg.url                 # postgresql+psycopg://postgres@127.0.0.1:PORT/postgres
    pg.stop(); pg.start()        # or pg.restart()
    pg.close()
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from postdesk.testing.postfix import shared_tmpdir
from postdesk.testing.wait import free_port, port_open, wait_for


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def available() -> tuple[bool, str]:
    if not _bin("initdb") or not _bin("pg_ctl"):
        return False, "PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False, "no postgres user to run a private cluster as"
    if os.geteuid() != 0:
        return False, "a private PostgreSQL cluster is started as root (then runs as user postgres)"
    return True, ""


class PrivatePostgres:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.root = shared_tmpdir("postdesk-pg-")
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.logfile = self.root / "postgres.log"
        self.initialised = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=120)

    def start(self, timeout: float = 60.0) -> PrivatePostgres:
        if not self.initialised:
            for d in (self.data, self.sockets):
                d.mkdir(parents=True, exist_ok=True)
                shutil.chown(d, "postgres", "postgres")
            shutil.chown(self.root, "postgres", "postgres")
            r = self._run(str(_bin("initdb")), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed: {r.stdout}{r.stderr}")
            self.initialised = True
        opts = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        r = self._run(str(_bin("pg_ctl")), "-D", str(self.data), "-l", str(self.logfile), "-o", opts, "-w", "-t", str(int(timeout)), "start")
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}{self.log()[-2000:]}")
        wait_for(lambda: port_open(self.port), timeout, f"the private PostgreSQL on {self.port}")
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.initialised and (self.data / "postmaster.pid").exists():
            self._run(str(_bin("pg_ctl")), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return Path(self.logfile).read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
