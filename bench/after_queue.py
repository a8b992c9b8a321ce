#!/usr/bin/env python3
"""Benchmark: after-queue throughput of ``postdesk lmtp`` vs ``postdesk filter``
(pipe(8)) vs bare Postfix relaying the same mail to a sink, in one run.

One private Postfix; between runs only ``transport_maps`` changes:

  bare  support@ relays to Postfix's ``smtp-sink`` like any other mail;
  pipe  support@ goes to the ``postdesk`` pipe(8) service of
        contrib/postfix/master.cf (one ``postdesk filter`` process per mail,
        run as user nobody, as pipe(8) refuses root);
  lmtp  support@ goes to the ``postdesk-lmtp`` service of
        contrib/postfix/master-lmtp.cf, delivering to one resident
        ``postdesk lmtp`` (``python -m postdesk.lmtp``).

Each run submits N unique 2 KB support mails (new tickets) over 4 SMTP
sessions and is timed from the first submission until Postfix's queue is
empty, i.e. every mail delivered (recorded).  Rounds are interleaved (bare,
pipe, lmtp, then reversed); each side records into its own SQLite store.
Sender authentication is off (``[trust] verify = false``) so DNS is not
measured.  Prints msg/s per side and each as a ratio to bare Postfix.
Needs root and Postfix.

    .venv/bin/python bench/after_queue.py                 # ~1-2 min on 2 cores
    .venv/bin/python bench/after_queue.py --messages 400 --rounds 3

pipe(8) runs ``postdesk`` as user nobody, who must be able to run its
interpreter: a virtualenv made from a Python under root's home (pyenv) is
not, so point --pipe-postdesk at one made from the system Python:

    /usr/bin/python3 -m venv /tmp/pd && /tmp/pd/bin/pip install .
    .venv/bin/python bench/after_queue.py --pipe-postdesk /tmp/pd/bin/postdesk
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postdesk.testing.lmtp import LmtpProcess  # noqa: E402
from postdesk.testing.postfix import PrivatePostfix, available, shared_tmpdir  # noqa: E402
from postdesk.testing.toml import toml_dumps  # noqa: E402
from postdesk.testing.wait import free_port, port_open, wait_for  # noqa: E402

SUPPORT = "support@example.com"
POSTDESK = Path(sys.executable).with_name("postdesk")


def mail(i: int, size: int = 2048) -> bytes:
    head = (
        f"From: Customer {i} <c{i}@customer.example>\r\nTo: {SUPPORT}\r\nSubject: Question {i}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@customer.example>\r\nDate: Fri, 27 Nov 2026 23:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = "The printer in room 4 is on fire again, please send help.\r\n"
    return (head + line * max(1, (size - len(head)) // len(line))).encode()


def send(port: int, n: int, sessions: int = 4) -> None:
    todo = iter(range(n))
    lock = threading.Lock()

    def worker() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                s.sendmail(f"c{i}@customer.example", [SUPPORT], mail(i))

    threads = [threading.Thread(target=worker) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def config(side_dir: Path, listen: str = "") -> Path:
    data = {
        "organization": {"system_addresses": [SUPPORT], "reply_to": SUPPORT, "team": ["team@example.com"], "staff": ["@example.com"]},
        "store": {"url": f"sqlite:///{side_dir}/postdesk.db", "attachments": str(side_dir / "attachments")},
        "limits": {"new_tickets_per_sender": 0},
        "trust": {"verify": False},
        "log": {"level": "WARNING", "target": "stderr"},
    }
    if listen:
        data["lmtp"] = {"listen": listen, "socket_group": "postfix", "socket_mode": "0660"}
    side_dir.mkdir(parents=True, exist_ok=True)
    path = side_dir / "postdesk.toml"
    path.write_text(toml_dumps(data))
    from postdesk import config as configmod
    from postdesk.store import Store

    store = Store.from_config(configmod.load(path))
    store.init()
    store.close()
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=200, help="support mails per run (default 200)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--pipe-postdesk", default=str(POSTDESK), help="the postdesk script pipe(8) runs (user nobody must be able to run it)")
    args = ap.parse_args()
    ok, why = available()
    if not ok:
        print(f"after_queue: {why}")
        return 0
    root = shared_tmpdir("postdesk-bench-aq-")
    procs: list[subprocess.Popen] = []
    pf = lmtp = None
    try:
        listen = f"unix:{root}/lmtp.sock"
        lmtp_cfg = config(root / "lmtp", listen)
        pipe_cfg = config(root / "pipe")
        # pipe(8) runs the filter as nobody: its store is nobody's.
        for p in [root / "pipe", *(root / "pipe").rglob("*")]:
            shutil.chown(p, "nobody", "nogroup")
        sink_port = free_port()
        sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        procs.append(subprocess.Popen([sink, "-u", "postfix", f"127.0.0.1:{sink_port}", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: port_open(sink_port), 10, "smtp-sink")
        pipe_service = (ROOT / "contrib" / "postfix" / "master.cf").read_text().replace("user=postdesk", "user=nobody").replace(
            "argv=/usr/bin/postdesk filter", f"argv={args.pipe_postdesk} --config {pipe_cfg} filter"
        )
        pf = PrivatePostfix(
            root / "postfix", free_port(), sink_port,
            extra={"default_process_limit": "200", "postdesk_destination_recipient_limit": "1"},
            services=[pipe_service, (ROOT / "contrib" / "postfix" / "master-lmtp.cf").read_text()],
        ).start()
        lmtp = LmtpProcess(lmtp_cfg, listen, root / "lmtp.log").start()
        routes = {"bare": "", "pipe": f"inline:{{ {SUPPORT}=postdesk: }}", "lmtp": f"inline:{{ {SUPPORT}=postdesk-lmtp:{listen} }}"}
        probe = subprocess.run(["runuser", "-u", "nobody", "--", args.pipe_postdesk, "--help"], capture_output=True, text=True)
        if probe.returncode != 0:
            # pipe(8) refuses root; an interpreter under a 0700 home cannot run as anyone else.
            print(f"  pipe side skipped: user nobody cannot run {args.pipe_postdesk} ({(probe.stderr or probe.stdout).strip()[:120]}); "
                  "see --pipe-postdesk")
            del routes["pipe"]
        rates: dict[str, list[float]] = {side: [] for side in routes}
        for rnd in range(args.rounds):
            for side in (list(routes) if rnd % 2 == 0 else list(routes)[::-1]):
                pf.postconf(transport_maps=routes[side])
                pf.reload()
                start = time.monotonic()
                send(pf.port, args.messages)
                wait_for(pf.queue_empty, 600, "the queue to drain", interval=0.05)
                elapsed = time.monotonic() - start
                rates[side].append(args.messages / elapsed)
                print(f"  round {rnd + 1} {side:5} {args.messages} mails {elapsed:6.2f}s {args.messages / elapsed:7.1f} msg/s", flush=True)
        bounced = pf.log().count("status=bounced") + pf.log().count("status=deferred")
        base = statistics.median(rates["bare"])
        print(f"\nafter-queue delivery of {args.messages} new-ticket mails (2 KB), median of {args.rounds} rounds, one run:")
        for side in routes:
            r = statistics.median(rates[side])
            print(f"  {side:5} {r:7.1f} msg/s  ratio to bare Postfix {r / base:6.3f}")
        if "pipe" in routes:
            print(f"  lmtp / pipe: {statistics.median(rates['lmtp']) / statistics.median(rates['pipe']):.1f}x")
        if bounced:
            print(f"  warning: {bounced} deferred or bounced deliveries in the Postfix log")
    finally:
        if lmtp is not None:
            lmtp.stop()
        if pf is not None:
            pf.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    # A SIGTERM (timeout, kill) must still stop the private Postfix, the
    # sink and postdesk lmtp in main's finally: left running, the Postfix
    # would retry its queued mail forever.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    sys.exit(main())
