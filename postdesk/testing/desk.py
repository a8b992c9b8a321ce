"""A help desk behind a private Postfix, for the integration tests.

What a test of the whole path needs, in one object: a configuration file,
an initialised store, an aiosmtpd ``Sink`` standing for the outside world,
a ``PrivatePostfix`` relaying to it, and the postdesk service that Postfix
hands support mail to: the milter (``MilterDesk``, SMTP time) or the LMTP
server (``LmtpDesk``, after the queue).  The service runs as a child
process, the way production runs it.

    desk = MilterDesk(tmp_path, base_config).start()
    try:
        code, text = desk.send(raw)          # through Postfix's SMTP port
        (got,) = desk.sink.wait(1)           # what left for the outside
        desk.tickets()                       # what the store holds
    finally:
        desk.close()

Needs root and the Debian postfix package (``postdesk.testing.postfix.available``).
"""

from __future__ import annotations

import copy
import shutil
import smtplib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from postdesk import config as configmod
from postdesk.testing.lmtp import LmtpProcess
from postdesk.testing.milter import MilterProcess
from postdesk.testing.postfix import PrivatePostfix, shared_tmpdir
from postdesk.testing.smtp import Sink
from postdesk.testing.toml import toml_dumps
from postdesk.testing.wait import free_port

Sections = dict[str, dict[str, Any]]
# The lmtp(8) service for the support addresses, as the docs deploy it.
MASTER_LMTP = Path(__file__).resolve().parent.parent.parent / "contrib" / "postfix" / "master-lmtp.cf"


def submit(port: int, raw: bytes, rcpts: Sequence[str] = ("support@example.com",), sender: str = "customer@example.org") -> tuple[int, str]:
    """Send ``raw`` to the SMTP server on loopback ``port``; the final
    (code, text) of the transaction: 250 "ok", or the refusal."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        try:
            s.sendmail(sender, list(rcpts), raw)
        except smtplib.SMTPResponseException as e:
            text = e.smtp_error
            return e.smtp_code, text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        except smtplib.SMTPRecipientsRefused as e:
            code, text = next(iter(e.recipients.values()))
            return code, text.decode(errors="replace")
    return 250, "ok"


class Desk:
    """The common part; ``MilterDesk`` and ``LmtpDesk`` say how Postfix reaches postdesk."""

    service: MilterProcess
    kind = "desk"  # names the socket directory

    def __init__(self, tmp_path: Path, base: Sections, *, store_url: str | None = None, extra: Sections | None = None):
        self.tmp = Path(tmp_path)
        # Postfix (user postfix) must reach the socket: not under pytest's 0700 tree.
        self.sockdir = shared_tmpdir(f"postdesk-{self.kind}-")
        self.port = free_port()  # Postfix's SMTP port
        data = copy.deepcopy(base)
        self.db = self.tmp / "postdesk.db"
        data["store"] = {"url": store_url or f"sqlite:///{self.db}", "attachments": str(self.tmp / "attachments"), "busy_timeout": 1.0}
        data["log"] = {"level": "INFO"}
        # The notifier (run in-process by a test) submits through this same Postfix.
        data["notifier"] = {**data.get("notifier", {}), "smtp": f"127.0.0.1:{self.port}"}
        self.configure(data)
        for section, values in (extra or {}).items():
            data.setdefault(section, {}).update(values)
        self.config_path = self.tmp / "postdesk.toml"
        self.config_path.write_text(toml_dumps(data))
        self.config = configmod.load(self.config_path)
        from postdesk.store import Store

        self.store = Store.from_config(self.config)
        self.store.init(self.config.organization.first_ticket_number)
        self.sink = Sink().start()
        self.postfix = self.make_postfix()
        self.service = self.make_service()

    def configure(self, data: Sections) -> None:
        """The service's own config sections."""
        raise NotImplementedError

    def make_postfix(self) -> PrivatePostfix:
        raise NotImplementedError

    def make_service(self) -> MilterProcess:
        raise NotImplementedError

    def start(self) -> Desk:
        self.service.start()
        self.postfix.start()
        return self

    def close(self) -> None:
        try:
            self.postfix.stop()
        finally:
            try:
                # SIGKILL: libmilter takes up to ~5 s to notice SIGTERM, and
                # the graceful stop has tests of its own.
                self.service.kill()
            finally:
                self.sink.stop()
                self.store.close()
                shutil.rmtree(self.sockdir, ignore_errors=True)

    def send(self, raw: bytes, rcpts: Sequence[str] = ("support@example.com",), sender: str = "customer@example.org") -> tuple[int, str]:
        """Through Postfix's SMTP port; the final (code, text) of DATA."""
        return submit(self.port, raw, rcpts, sender)

    def tickets(self) -> list[dict]:
        return self.store.list_tickets()


class MilterDesk(Desk):
    """Postfix with ``smtpd_milters`` set to the postdesk milter."""

    kind = "milter"

    def configure(self, data: Sections) -> None:
        self.socket_path = self.sockdir / "milter.sock"
        data["milter"] = {"socket": f"unix:{self.socket_path}", "socket_group": "postfix", "socket_mode": "0660"}

    def make_postfix(self) -> PrivatePostfix:
        return PrivatePostfix(self.tmp, self.port, self.sink.port, milter_socket=f"unix:{self.socket_path}")

    def make_service(self) -> MilterProcess:
        return MilterProcess(self.config_path, self.socket_path, self.tmp / "milter.log")

    @property
    def milter(self) -> MilterProcess:
        return self.service

    @milter.setter
    def milter(self, process: MilterProcess) -> None:
        self.service = process


class LmtpDesk(Desk):
    """Postfix delivering the support addresses to ``postdesk lmtp`` through
    the lmtp(8) service of contrib/postfix/master-lmtp.cf."""

    kind = "lmtp"
    support = ("support@example.com", "help@example.com")

    def configure(self, data: Sections) -> None:
        self.listen = f"unix:{self.sockdir}/lmtp.sock"
        data["lmtp"] = {"listen": self.listen, "socket_group": "postfix", "socket_mode": "0660"}
        # Only the forwarded client may be trusted, never Postfix's own loopback connection.
        data["trust"] = {"trusted_networks": [], "ack_unauthenticated": True}

    def make_postfix(self) -> PrivatePostfix:
        route = ", ".join(f"{a}=postdesk-lmtp:{self.listen}" for a in self.support)
        return PrivatePostfix(
            self.tmp, self.port, self.sink.port, extra={"transport_maps": f"inline:{{ {route} }}"}, services=[MASTER_LMTP.read_text()]
        )

    def make_service(self) -> LmtpProcess:
        return LmtpProcess(self.config_path, self.listen, self.tmp / "lmtp.log")

    @property
    def lmtp(self) -> MilterProcess:
        return self.service

    @lmtp.setter
    def lmtp(self, process: MilterProcess) -> None:
        self.service = process

    def send(self, raw: bytes, rcpts: Sequence[str] = ("support@example.com",), sender: str = "customer@example.org") -> tuple[int, str]:
        """Postfix queues everything for LMTP: anything but 250 here is the
        test's setup failing, not postdesk's answer."""
        code, text = super().send(raw, rcpts, sender)
        if code != 250:
            raise AssertionError(f"Postfix refused the mail at SMTP time: {code} {text}")
        return code, text
