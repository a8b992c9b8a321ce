"""Benchmark: ``postdesk filter`` start-to-exit on a 2 KB mail, as a ratio to
a bare ``python3 -c pass`` of the same interpreter.

    .venv/bin/python bench/pipe_startup.py [--runs 30]

Postfix pipe(8) starts one process per message, so start-up is most of the
cost of the after-queue path.  Each filter run records a fresh 2 KB mail
(a new ticket) in a SQLite store in a temporary directory, through the
installed console script, exactly as master.cf would run it.  With hyperfine
installed it measures with ``hyperfine -N``; otherwise it interleaves the two
commands (baseline, filter, baseline, ...) timed with time.perf_counter
around subprocess runs, and compares medians.  Also prints the slowest
imports of one filter run (``-X importtime``) to show where the time goes.

Goal: at most 4x.  Exits 0 whatever the figure is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SCRIPT = Path(sys.executable).with_name("postdesk")

CONFIG = """\
[organization]
system_addresses = ["support@example.com"]
reply_to = "support@example.com"
team = ["team@example.com"]
staff = ["@example.com"]

[store]
url = "sqlite:///{dir}/postdesk.db"
attachments = "{dir}/attachments"
"""


def mail(i: int, size: int = 2048) -> bytes:
    head = (
        "From: Alice Customer <alice@customer.example>\n"
        "To: support@example.com\n"
        f"Subject: Printer trouble {i}\n"
        "Date: Fri, 27 Nov 2026 23:00:00 +0000\n"
        f"Message-ID: <{i}.{os.getpid()}.startup@customer.example>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "\n"
    ).encode()
    line = b"The printer in room four prints only blank pages since the update.\n"
    body = (line * (size // len(line) + 1))[: size - len(head)]
    return head + body.rsplit(b"\n", 1)[0] + b"\n"


def filter_argv(config: Path, i: int) -> list[str]:
    cmd = [str(SCRIPT)] if SCRIPT.exists() else [PYTHON, "-m", "postdesk"]
    return cmd + ["--config", str(config), "filter", "--sender", "alice@customer.example", "--recipient", "support@example.com", "--queue-id", f"BENCH{i}", "--client-address", "203.0.113.5"]


def timed(argv: list[str], data: bytes | None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def with_loop(config: Path, runs: int) -> tuple[list[float], list[float]]:
    base, filt = [], []
    for i in range(3):  # warm-up: page cache, .pyc files
        timed([PYTHON, "-c", "pass"], None)
        timed(filter_argv(config, -1 - i), mail(-1 - i))
    for i in range(runs):
        data = mail(i)
        base.append(timed([PYTHON, "-c", "pass"], None))
        filt.append(timed(filter_argv(config, i), data))
    return base, filt


def with_hyperfine(hyperfine: str, config: Path, runs: int, tmp: Path) -> tuple[list[float], list[float]]:
    # hyperfine feeds one file for every run: after the first, the store says
    # "duplicate" (still a full transaction and the same imports).
    eml = tmp / "mail.eml"
    eml.write_bytes(mail(0))
    export = tmp / "hyperfine.json"
    cmd_filter = " ".join(filter_argv(config, 0))
    subprocess.run(
        [hyperfine, "-N", "--warmup", "3", "--runs", str(runs), "--input", str(eml), "--export-json", str(export), f"{PYTHON} -c pass", cmd_filter],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    results = json.loads(export.read_text())["results"]
    return results[0]["times"], results[1]["times"]


def slowest_imports(config: Path, n: int = 6) -> list[tuple[int, str]]:
    argv = [PYTHON, "-X", "importtime", "-m", "postdesk"] + filter_argv(config, 999)[1 if SCRIPT.exists() else 3 :]
    p = subprocess.run(argv, input=mail(999_999), capture_output=True, cwd=ROOT)
    top = []
    for line in p.stderr.decode(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split(":", 1)[1].split("|")
            # Top-level imports have one space before the name; nested ones more.
            if cumulative.strip().isdigit() and name.startswith(" ") and not name.startswith("  "):
                top.append((int(cumulative), name.strip()))
    top.sort(reverse=True)
    return top[:n]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--no-hyperfine", action="store_true", help="use the timing loop even when hyperfine is installed")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="postdesk-bench-"))
    try:
        config = tmp / "postdesk.toml"
        config.write_text(CONFIG.format(dir=tmp))
        cmd = [str(SCRIPT)] if SCRIPT.exists() else [PYTHON, "-m", "postdesk"]
        subprocess.run(cmd + ["--config", str(config), "init"], check=True, capture_output=True)
        hyperfine = None if args.no_hyperfine else shutil.which("hyperfine")
        if hyperfine:
            base, filt = with_hyperfine(hyperfine, config, args.runs, tmp)
            how = "hyperfine -N"
        else:
            base, filt = with_loop(config, args.runs)
            how = "interleaved perf_counter loop over subprocess runs"
        b, f = statistics.median(base), statistics.median(filt)
        print(f"measured with {how}, {args.runs} runs each, medians")
        print(f"  {PYTHON} -c pass: {b * 1000:.1f} ms")
        print(f"  postdesk filter (2 KB mail, new ticket, SQLite): {f * 1000:.1f} ms")
        print("  slowest top-level imports of one filter run (cumulative):")
        for us, name in slowest_imports(config):
            print(f"    {us / 1000:7.1f} ms  {name}")
        print(f"postdesk filter start-to-exit / python3 -c pass = {f / b:.2f}x (goal <= 4x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
