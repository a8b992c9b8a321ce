#!/usr/bin/env python3
"""Benchmark: the notifier's peak memory when it sends a large attachment.

A ticket gets a public staff reply with one attachment of ``--mb``
megabytes (random bytes, 25 by default, Postfix's usual message size limit);
then ``postdesk notifier --once`` runs under ``/usr/bin/time -v`` and sends
the customer update that carries it to an aiosmtpd sink.  Printed: the
pass's peak RSS ("Maximum resident set size"), the same for a pass with no
attachment at all (the interpreter and its imports, measured in the same
run), and the difference divided by the attachment's size: how many copies
of the attachment the notifier held at its peak.  The sink checks that the
bytes arrived unchanged.

    .venv/bin/python bench/notifier_rss.py                 # SQLite, directory blobs
    .venv/bin/python bench/notifier_rss.py --blobs database
    .venv/bin/python bench/notifier_rss.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test

``PYTHONPATH=OTHER_CHECKOUT`` runs another checkout's notifier (the
comparison before and after a change); ``--blobs`` needs a postdesk that has
``[store] blobs``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if "PYTHONPATH" not in os.environ:
    sys.path.insert(0, str(ROOT))

TIME = "/usr/bin/time"


def _pgschema():
    """This checkout's ``postdesk.testing.pgschema``, loaded from its file:
    with PYTHONPATH naming another checkout, ``postdesk`` is that one, which
    may predate the module (the "before" of a comparison)."""
    spec = importlib.util.spec_from_file_location("bench_pgschema", ROOT / "postdesk" / "testing" / "pgschema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _config(directory: Path, url: str, sink_port: int, blobs: str | None) -> Path:
    from postdesk.testing.toml import toml_dumps

    store = {"url": url, "attachments": str(directory / "attachments")}
    if blobs:
        store["blobs"] = blobs
    data = {
        "organization": {"system_addresses": ["support@example.com"], "reply_to": "support@example.com", "team": ["team@example.com"], "staff": ["@example.com"]},
        "store": store,
        "notifier": {"smtp": f"127.0.0.1:{sink_port}", "quiet_period": 0, "max_wait": 0},
        "log": {"level": "WARNING", "target": "stderr"},
    }
    path = directory / "postdesk.toml"
    path.write_text(toml_dumps(data))
    return path


def _record(config_path: Path, payload: bytes | None, when: datetime) -> None:
    """A ticket from a customer, then a public staff reply (with ``payload``
    attached); the acknowledgement and the alert are sent (and so out of the
    way) by a first notifier pass in this process."""
    from postdesk import config as configmod
    from postdesk.filter.decision import Attachment, Decision, Envelope, Kind
    from postdesk.notifier.worker import Worker
    from postdesk.store import Store

    config = configmod.load(config_path)
    store = Store.from_config(config)
    store.init(1000)
    env = Envelope(sender="alice@customer.org", recipients=("support@example.com",), queue_id="BENCH", client_address="127.0.0.1")
    key = f"{uuid.uuid4().hex}@customer.org"
    first = Decision(kind=Kind.NEW, message_key=key, message_id=key, author="alice@customer.org", author_name="Alice",
                     subject="Logs attached", original_subject="Logs attached", text="Hello.\n", new_text="Hello.")
    result = store.record(lambda known: first, env, config, when)
    Worker(config, store, lambda: when).run_pass()
    key = f"{uuid.uuid4().hex}@example.com"
    attachments = (Attachment(filename="dump.bin", content_type="application/octet-stream", data=payload),) if payload else ()
    reply = Decision(kind=Kind.FOLLOWUP, ticket=result.ticket, message_key=key, message_id=key, author="bob@example.com",
                     subject="Logs attached", text="Here it is.\n", new_text="Here it is.", staff=True, notify_team=False,
                     send_ack=False, flags=frozenset({"staff"}), attachments=attachments)
    staff_env = Envelope(sender="bob@example.com", recipients=("support@example.com",), queue_id="BENCH2", client_address="127.0.0.1")
    store.record(lambda known: reply, staff_env, config, when + timedelta(seconds=1))
    store.close()


def _peak_kb(config_path: Path) -> int:
    """``postdesk notifier --once`` under /usr/bin/time -v: its peak RSS in KB."""
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    r = subprocess.run([TIME, "-v", sys.executable, "-m", "postdesk", "--config", str(config_path), "notifier", "--once"],
                       capture_output=True, text=True, env=env)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"notifier --once failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return int(m.group(1))


def run_case(args, payload: bytes | None) -> tuple[int, list]:
    from postdesk.testing.smtp import Sink

    directory = Path(tempfile.mkdtemp(prefix="postdesk-rss-"))
    schema = None
    sink = Sink().start()
    try:
        url = f"sqlite:///{directory}/postdesk.db"
        if args.pg:
            schema = _pgschema().create(args.pg, prefix="pd_rss_")
            url = schema.url
        config_path = _config(directory, url, sink.port, args.blobs)
        when = datetime.utcnow().replace(microsecond=0) - timedelta(hours=1)
        _record(config_path, payload, when)
        sink.clear()
        peak = _peak_kb(config_path)
        return peak, list(sink.messages)
    finally:
        sink.stop()
        if schema:
            schema.drop()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=25.0, help="attachment size in MB (default 25)")
    p.add_argument("--blobs", choices=("database", "directory"), default=None, help="[store] blobs (default: the store's own default)")
    p.add_argument("--pg", metavar="URL", default="", help="PostgreSQL (a fresh schema in this database) instead of SQLite")
    args = p.parse_args(argv)
    if not os.path.exists(TIME):
        print(f"bench/notifier_rss.py: {TIME} is missing (Debian package time)", file=sys.stderr)
        return 69
    payload = os.urandom(int(args.mb * 1024 * 1024))
    base, _ = run_case(args, None)
    peak, got = run_case(args, payload)
    updates = [r for r in got if r.recipients == ["alice@customer.org"]]
    if len(updates) != 1:
        raise SystemExit(f"expected one update at the sink, got {[r.recipients for r in got]}")
    parts = [part for part in updates[0].message.iter_attachments()]
    same = len(parts) == 1 and hashlib.sha256(parts[0].get_content()).digest() == hashlib.sha256(payload).digest()
    mb = len(payload) / 1024 / 1024
    store = "PostgreSQL" if args.pg else "SQLite"
    print(f"notifier --once, {store}, blobs={args.blobs or 'default'}, one update with a {mb:.1f} MB attachment (bytes equal at the sink: {same})")
    print(f"  peak RSS without attachment {base / 1024:7.1f} MB")
    print(f"  peak RSS with attachment    {peak / 1024:7.1f} MB  (+{(peak - base) / 1024:.1f} MB = {(peak - base) / 1024 / mb:.2f} x the attachment)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
