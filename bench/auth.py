"""Benchmark: what sender authentication adds to each support mail.

    .venv/bin/python bench/auth.py [--messages 200] [--rounds 3] [--postfix]

Times ``postdesk.ingest.ingest`` (parse, authenticate, decide, record on a
SQLite store in a temp directory) in-process for support mails that are
DKIM-signed (a 2048-bit RSA key) by a domain publishing SPF and DMARC on a
DNS server on loopback (``postdesk.testing.dns``).  Three sides, interleaved
round by round so the machine's drift hits all alike:

  off     [trust] verify = false: nothing is checked (the baseline);
  cached  verify on, the resolver's cache warm: SPF, DKIM and DMARC cost
          only computation (the common case: a customer writes again);
  cold    verify on, the cache emptied before every mail: every lookup
          (SPF TXT, DKIM key, _dmarc TXT) goes to the DNS server.

Prints the median milliseconds per mail of each side and the ratios to
``off`` from the same run.  ``--postfix`` measures the same sides through a
private Postfix and the milter process, as the sender sees them.  The loopback DNS server answers in well under a
millisecond; a real resolver adds its network round trips to ``cold``.
Mail that is not for a support address is accepted at DATA by the milter
and never verified: its pass-through cost does not change (bench/milter.py).
Exits 0 whatever the figures are (a benchmark reports, a test asserts).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402
from dkim import dknewkey  # noqa: E402

from postdesk import config as configmod  # noqa: E402
from postdesk.auth.dns import resolver_for  # noqa: E402
from postdesk.filter.decision import Envelope  # noqa: E402
from postdesk.ingest import ingest  # noqa: E402
from postdesk.store import Store  # noqa: E402
from postdesk.testing.dns import DNSServer  # noqa: E402

CLIENT = "192.0.2.7"
DOMAIN = "customer.example"


def make_key(directory: Path) -> tuple[bytes, str]:
    path = str(directory / "bench.key")
    dknewkey.GenRSAKeys(path, verbose=False)
    dknewkey.ExtractRSADnsPublicKey(path, path + ".dns", verbose=False)
    text = Path(path + ".dns").read_text()
    public = text.split("p=", 1)[1].split('"')[0].split()[0].strip()
    return Path(path).read_bytes(), public


def mail(i: int, side: str, key: bytes) -> bytes:
    return signed_mail(i, side, key, DOMAIN)


def config_for(tmp: Path, dns: DNSServer, verify: bool) -> configmod.Config:
    return configmod.from_dict(
        {
            "organization": {"system_addresses": ["support@example.com"], "reply_to": "support@example.com", "team": ["team@example.com"], "staff": ["@example.com"]},
            "store": {"url": f"sqlite:///{tmp}/bench.db", "attachments": str(tmp / "attachments")},
            "trust": {"verify": verify},
            "dns": {"nameservers": [dns.address], "timeout": 2},
        },
        source="<bench>",
    )


def run(side: str, n: int, key: bytes, store, config, resolver) -> list[float]:
    """Milliseconds per mail for ``n`` mails on one side."""
    mails = [mail(i, side, key) for i in range(n)]  # signing is not what we measure
    env = Envelope(sender=f"alice@{DOMAIN}", recipients=("support@example.com",), queue_id="BENCH", client_address=CLIENT, helo=f"mail.{DOMAIN}")
    times = []
    for raw in mails:
        if side == "cold":
            resolver.clear_cache()
        started = time.perf_counter()
        result = ingest(raw, env, store, config)
        times.append((time.perf_counter() - started) * 1000)
        if side != "off" and not result.decision.auth.verified:
            raise SystemExit(f"bench setup broken: {side} mail not verified: {result.decision.auth}")
    return times


def through_postfix(args) -> int:
    """The same three sides through a private Postfix and the milter process.

    Two milters (verify off / on, each its own process and resolver cache);
    Postfix is switched between them (``smtpd_milters`` + reload).  ``cold``
    sends each mail from a domain not seen before (``dN.cold.example``, its
    own SPF and DKIM key, the DMARC policy at the organisational domain), so
    the SPF, DKIM and ``_dmarc`` lookups of that domain all go to DNS.  The
    figure is the sender's time per message (one SMTP session, messages one
    after another), so it includes Postfix and the milter protocol.
    """
    import shutil
    import smtplib
    import subprocess

    from postdesk.testing.postfix import PrivatePostfix, available, shared_tmpdir
    from postdesk.testing.smtp import Sink
    from postdesk.testing.toml import toml_dumps
    from postdesk.testing.wait import free_port, unix_socket_open, wait_for

    ok, why = available()
    if not ok:
        print(f"--postfix: {why}")
        return 0
    root = shared_tmpdir("postdesk-bench-auth-")
    procs: list[subprocess.Popen] = []
    pf = sink = None
    try:
        with DNSServer() as dns:
            key, public = make_key(root)
            total = args.messages * args.rounds
            dns.set(DOMAIN, TXT=["v=spf1 ip4:127.0.0.1 -all"])
            dns.set(f"sel._domainkey.{DOMAIN}", TXT=[f"v=DKIM1; k=rsa; p={public}"])
            dns.set(f"_dmarc.{DOMAIN}", TXT=["v=DMARC1; p=reject"])
            dns.set("_dmarc.cold.example", TXT=["v=DMARC1; p=reject"])
            for i in range(total + 5):
                dns.set(f"d{i}.cold.example", TXT=["v=spf1 ip4:127.0.0.1 -all"])
                dns.set(f"sel._domainkey.d{i}.cold.example", TXT=[f"v=DKIM1; k=rsa; p={public}"])
            socks = {}
            for side, verify in (("off", False), ("on", True)):
                sock = root / f"{side}.sock"
                data = {
                    "organization": {"system_addresses": ["support@example.com"], "reply_to": "support@example.com", "team": ["team@example.com"], "staff": ["@example.com"]},
                    "store": {"url": f"sqlite:///{root}/{side}.db", "attachments": str(root / f"att-{side}")},
                    "milter": {"socket": f"unix:{sock}", "socket_group": "postfix", "socket_mode": "0660"},
                    "trust": {"verify": verify},
                    "dns": {"nameservers": [dns.address], "timeout": 2},
                    "log": {"level": "WARNING"},
                }
                cfg = root / f"{side}.toml"
                cfg.write_text(toml_dumps(data))
                subprocess.run([sys.executable, "-m", "postdesk", "--config", str(cfg), "init"], check=True, capture_output=True, cwd=ROOT)
                log = open(root / f"{side}.log", "ab")
                procs.append(subprocess.Popen([sys.executable, "-m", "postdesk.milter", "--config", str(cfg)], stdout=log, stderr=log, cwd=ROOT))
                wait_for(lambda path=str(sock): unix_socket_open(path), 15, f"the {side} milter")
                socks[side] = f"unix:{sock}"
            sink = Sink().start()
            pf = PrivatePostfix(root / "postfix", free_port(), sink.port, milter_socket=socks["off"]).start()
            counter = iter(range(10**9))

            def send(side: str, n: int) -> list[float]:
                pf.set_milter(socks["on" if side != "off" else "off"])
                times = []
                with smtplib.SMTP("127.0.0.1", pf.port, timeout=60) as smtp:
                    for _ in range(n):
                        i = next(counter)
                        if side == "cold":
                            domain = f"d{next(cold)}.cold.example"
                        else:
                            domain = DOMAIN
                        raw = signed_mail(i, side, key, domain)
                        started = time.perf_counter()
                        smtp.sendmail(f"alice@{domain}", ["support@example.com"], raw)
                        times.append((time.perf_counter() - started) * 1000)
                return times

            cold = iter(range(total + 5))
            send("cached", 5)  # warm-up: the "on" milter's imports, list and cache
            times: dict[str, list[float]] = {"off": [], "cached": [], "cold": []}
            for r in range(args.rounds):
                for side in (("off", "cached", "cold") if r % 2 == 0 else ("cold", "cached", "off")):
                    times[side] += send(side, args.messages)
            # The support copies say what was found: the "on" sides must be verified.
            sent = 5 + 3 * args.rounds * args.messages
            got = sink.wait(sent, timeout=120)
            unverified = [m for m in got if " off " not in (m.header("Subject") or "") and "dmarc=pass" not in " ".join(str(v) for v in m.message.get_all("Authentication-Results") or [])]
            if unverified:
                raise SystemExit(f"bench setup broken: {len(unverified)} verified-side mails without dmarc=pass, e.g. {unverified[0].header('Subject')}")
            report(times, f"through Postfix + milter, sender's time per support mail, {args.rounds} rounds x {args.messages} mails per side:", len(dns.queries))
    finally:
        if pf is not None:
            pf.stop()
        for p in procs:
            p.kill()
            p.wait(10)
        if sink is not None:
            sink.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def signed_mail(i: int, side: str, key: bytes, domain: str) -> bytes:
    body = "The printer on the third floor prints every page twice.\r\n" * 30
    raw = (
        f"From: Alice <alice@{domain}>\r\nTo: support@example.com\r\nSubject: Printer {side} {i}\r\n"
        f"Message-ID: <{side}.{i}.{time.monotonic_ns()}@{domain}>\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()
    return dkim.sign(raw, b"sel", domain.encode(), key, include_headers=[b"from", b"to", b"subject", b"message-id", b"date"]) + raw


def report(times: dict[str, list[float]], title: str, asked: int) -> None:
    med = {side: statistics.median(t) for side, t in times.items()}
    p90 = {side: statistics.quantiles(t, n=10)[-1] for side, t in times.items()}
    print(title)
    for side in ("off", "cached", "cold"):
        print(f"  {side:7s} median {med[side]:6.2f} ms  p90 {p90[side]:6.2f} ms  ratio to off {med[side] / med['off']:.2f}")
    print(f"  added by verification: cached {med['cached'] - med['off']:+.2f} ms, cold {med['cold'] - med['off']:+.2f} ms per mail; {asked} DNS queries in all")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200, help="mails per side per round (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--postfix", action="store_true", help="through a private Postfix and the milter process instead (needs root and Postfix)")
    args = ap.parse_args(argv)
    if args.postfix:
        return through_postfix(args)
    logging.getLogger("postdesk").setLevel(logging.WARNING)  # no per-message log lines
    with tempfile.TemporaryDirectory(prefix="postdesk-bench-auth-") as d, DNSServer() as dns:
        tmp = Path(d)
        key, public = make_key(tmp)
        dns.set(DOMAIN, TXT=[f"v=spf1 ip4:{CLIENT} -all"])
        dns.set(f"sel._domainkey.{DOMAIN}", TXT=[f"v=DKIM1; k=rsa; p={public}"])
        dns.set(f"_dmarc.{DOMAIN}", TXT=["v=DMARC1; p=reject"])
        on, off = config_for(tmp, dns, True), config_for(tmp, dns, False)
        store = Store.from_config(on)
        store.init(on.organization.first_ticket_number)
        resolver = resolver_for(on)
        run("cached", 5, key, store, on, resolver)  # warm-up: imports, the public suffix list, the cache
        times: dict[str, list[float]] = {"off": [], "cached": [], "cold": []}
        for r in range(args.rounds):
            order = ("off", "cached", "cold") if r % 2 == 0 else ("cold", "cached", "off")
            for side in order:
                times[side] += run(side, args.messages, key, store, off if side == "off" else on, resolver)
        store.close()
        asked = len(dns.queries)
    report(times, f"ingest per support mail (DKIM-signed 2 KB, SQLite, loopback DNS), {args.rounds} rounds x {args.messages} mails per side:", asked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
