"""Several mail hosts on one database, on one machine: tests and ``bench/``.

Each ``Host`` is what one MX of a company runs: its own private Postfix
(``PrivatePostfix``, own queue and port), its own milter process
(``MilterProcess``) on its own socket, and its own notifier process
submitting through that Postfix, each with its own configuration file and
directories.  What the hosts share is what production shares: the
PostgreSQL URL, ``[store] blobs = "database"``, the ``[organization]`` and
the Message-ID secret (in the database).  Every Postfix relays to one
aiosmtpd ``Sink``: the outside world.

    with Hosts(tmpdir, pg_url, shared_config, count=2) as hosts:
        hosts[0].send(raw)                   # MX one
        hosts[1].send(raw2)                  # MX two
        hosts.sink.wait(4)

Needs root and the Debian postfix package (``postdesk.testing.postfix.available``).
"""

from __future__ import annotations

import copy
import shutil
import smtplib
from pathlib import Path
from typing import Any

from postdesk.testing.milter import MilterProcess
from postdesk.testing.postfix import PrivatePostfix, shared_tmpdir
from postdesk.testing.process import ServiceProcess
from postdesk.testing.smtp import Sink
from postdesk.testing.toml import toml_dumps
from postdesk.testing.wait import free_port


class NotifierProcess(ServiceProcess):
    """``python -m postdesk --config FILE notifier``, output to a log file."""

    def start(self) -> NotifierProcess:
        self.spawn("postdesk", "notifier")
        return self


class Host:
    """One MX: a private Postfix, a milter and (optionally) a notifier, with
    its own configuration file ``root/postdesk.toml`` and directories."""

    def __init__(self, name: str, root: Path, config: dict[str, dict[str, Any]], relay_port: int, notifier: bool = True):
        self.name = name
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # Postfix (user postfix) must reach the socket: not under a 0700 tree.
        self.sockdir = shared_tmpdir(f"postdesk-{name}-")
        self.socket_path = self.sockdir / "milter.sock"
        self.port = free_port()
        data = copy.deepcopy(config)
        data.setdefault("store", {})["attachments"] = str(self.root / "attachments")  # unused with database blobs
        data["milter"] = {**data.get("milter", {}), "socket": f"unix:{self.socket_path}", "socket_group": "postfix", "socket_mode": "0660"}
        data["notifier"] = {**data.get("notifier", {}), "smtp": f"127.0.0.1:{self.port}"}  # through its own Postfix
        data["log"] = {"level": "INFO", "target": "stderr", **data.get("log", {})}
        self.config_path = self.root / "postdesk.toml"
        self.config_path.write_text(toml_dumps(data))
        self.postfix = PrivatePostfix(self.root, self.port, relay_port, milter_socket=f"unix:{self.socket_path}")
        self.milter = MilterProcess(self.config_path, self.socket_path, self.root / "milter.log")
        self.notifier = NotifierProcess(self.config_path, self.root / "notifier.log") if notifier else None

    def start(self) -> Host:
        self.milter.start()
        self.postfix.start()
        if self.notifier is not None:
            self.notifier.start()
        return self

    def stop(self) -> None:
        try:
            if self.notifier is not None:
                self.notifier.stop()
        finally:
            try:
                self.postfix.stop()
            finally:
                # SIGKILL: libmilter takes seconds to act on SIGTERM; its
                # graceful stop has tests of its own.
                self.milter.kill()
                shutil.rmtree(self.sockdir, ignore_errors=True)

    def send(self, raw: bytes, rcpts=("support@example.com",), sender: str = "customer@example.org") -> tuple[int, str]:
        """One SMTP session to this host; the final (code, text) of the transaction."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as s:
            try:
                s.sendmail(sender, list(rcpts), raw)
            except smtplib.SMTPResponseException as e:
                error = e.smtp_error
                return e.smtp_code, error.decode(errors="replace") if isinstance(error, bytes) else error
            except smtplib.SMTPRecipientsRefused as e:
                code, text = next(iter(e.recipients.values()))
                return code, text.decode(errors="replace") if isinstance(text, bytes) else text
        return 250, "ok"

    def queue_empty(self) -> bool:
        return self.postfix.queue_empty()


class Hosts:
    """``count`` hosts on one store (``store_url``, database blobs), relaying to one sink.

    ``config``: the settings every host shares (``[organization]``,
    ``[trust]``, ``[notifier]``, ...); the store section is filled in here.
    ``notifiers``: how many of the hosts run a notifier (all by default).
    The schema is created (``Store.init``) before any host starts.
    """

    def __init__(self, tmpdir, store_url: str, config: dict[str, dict[str, Any]], count: int = 2, notifiers: int | None = None):
        self.tmpdir = Path(tmpdir)
        self.sink = Sink()
        shared = copy.deepcopy(config)
        shared["store"] = {**shared.get("store", {}), "url": store_url, "blobs": "database"}
        self.config = shared
        n = count if notifiers is None else notifiers
        self.hosts = [Host(f"mx{i + 1}", self.tmpdir / f"mx{i + 1}", shared, self.sink.port, notifier=i < n) for i in range(count)]

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def __iter__(self):
        return iter(self.hosts)

    def start(self) -> Hosts:
        from postdesk import config as configmod
        from postdesk.store import Store

        loaded = configmod.load(self.hosts[0].config_path)
        store = Store.from_config(loaded)
        try:
            store.init(loaded.organization.first_ticket_number)
        finally:
            store.close()
        self.sink.start()
        try:
            for host in self.hosts:
                host.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for host in self.hosts:
            try:
                host.stop()
            except Exception:
                pass
        self.sink.stop()

    def queues_empty(self) -> bool:
        return all(h.queue_empty() for h in self.hosts)

    def __enter__(self) -> Hosts:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
