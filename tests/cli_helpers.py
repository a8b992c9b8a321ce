"""Helpers for the CLI and pipe tests: a config file, a runner, test mails.

Everything goes through a real subprocess (``python -m postdesk``), the way
Postfix pipe(8), systemd and an admin's shell run it, so exit statuses,
stdout/stderr and import side effects are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from postdesk.testing.toml import toml_dumps
from tests.conftest import BASE_CONFIG

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, store_url: str, attachments: Path, **sections: dict[str, Any]) -> Path:
    data: dict[str, dict[str, Any]] = {k: dict(v) for k, v in BASE_CONFIG.items()}
    data["store"] = {"url": store_url, "attachments": str(attachments)}
    for section, values in sections.items():
        if isinstance(values, list):  # [[departments]]
            data[section] = values  # type: ignore[assignment]
        else:
            data.setdefault(section, {}).update(values)
    path.write_text(toml_dumps(data), encoding="utf-8")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTDESK_CONFIG"}
    env.update(extra)
    return env


def run(*args: str, input: bytes | None = b"", env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m postdesk ARGS`` with bytes in, bytes out."""
    return subprocess.run(
        [sys.executable, "-m", "postdesk", *args],
        input=input,
        capture_output=True,
        env=env if env is not None else clean_env(),
        cwd=ROOT,
        timeout=timeout,
    )


def make_mail(
    subject: str = "Printer on fire",
    sender: str = "Alice Customer <alice@customer.example>",
    to: str = "support@example.com",
    body: str = "Hello,\nthe printer in room 4 is on fire.\nAlice\n",
    message_id: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Fri, 27 Nov 2026 23:00:00 +0000"
    msg["Message-ID"] = f"<{message_id or uuid.uuid4().hex + '@customer.example'}>"
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=default_policy.clone(linesep="\n"))


def pad_to(raw: bytes, size: int) -> bytes:
    """A mail of exactly ``size`` bytes (body padded with text lines)."""
    head, sep, body = raw.partition(b"\n\n")
    missing = size - len(raw)
    line = b"All work and no play makes Jack a dull boy, said the printer.\n"
    filler = (line * (missing // len(line) + 1))[:missing]
    if filler and not filler.endswith(b"\n"):
        filler = filler[:-1] + b"\n"
    return head + sep + body + filler


@dataclass
class Desk:
    """One postdesk installation in a temporary directory."""

    root: Path
    config: Path
    store_url: str

    @property
    def attachments(self) -> Path:
        return self.root / "attachments"

    def cli(self, *args: str, input: bytes | None = b"") -> subprocess.CompletedProcess:
        return run("--config", str(self.config), *args, input=input)

    def filter(self, raw: bytes, sender: str = "alice@customer.example", recipients: tuple[str, ...] = ("support@example.com",), *extra: str) -> subprocess.CompletedProcess:
        args = ["filter", "--sender", sender]
        for r in recipients:
            args += ["--recipient", r]
        return self.cli(*args, *extra, input=raw)

    def record(self, raw: bytes, sender: str = "alice@customer.example", recipients: tuple[str, ...] = ("support@example.com",)) -> Any:
        """Record a message in-process (fast set-up; test_pipe covers the subprocess)."""
        from postdesk import config as configmod
        from postdesk.filter.decision import Envelope
        from postdesk.ingest import ingest
        from postdesk.store import Store

        config = configmod.load(self.config)
        store = Store.from_config(config)
        try:
            return ingest(raw, Envelope(sender, recipients, "SETUP", "203.0.113.5"), store, config)
        finally:
            store.close()

    def json(self, *args: str) -> Any:
        p = self.cli(*args, "--json")
        assert p.returncode == 0, p.stderr.decode()
        return json.loads(p.stdout)


def make_desk(root: Path, store_url: str, init: bool = True, **sections: dict[str, Any]) -> Desk:
    root.mkdir(parents=True, exist_ok=True)
    config = write_config(root / "postdesk.toml", store_url, root / "attachments", **sections)
    desk = Desk(root, config, store_url)
    if init:
        # In-process: the same Store.init that `postdesk init` runs (tested
        # through the CLI in test_cli), without one more interpreter start.
        from postdesk import config as configmod
        from postdesk.store import Store

        loaded = configmod.load(config)
        store = Store.from_config(loaded)
        try:
            store.init(loaded.organization.first_ticket_number)
        finally:
            store.close()
    return desk
