"""Benchmark: what sender authentication adds to each support mail.

    .venv/bin/python bench/auth.py [--messages 200] [--rounds 3]

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
``off`` from the same run.  The loopback DNS server answers in well under a
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
    body = ("The printer on the third floor prints every page twice.\r\n" * 30)
    raw = (
        f"From: Alice <alice@{DOMAIN}>\r\nTo: support@example.com\r\nSubject: Printer {side} {i}\r\n"
        f"Message-ID: <{side}.{i}.{time.monotonic_ns()}@{DOMAIN}>\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()
    return dkim.sign(raw, b"sel", DOMAIN.encode(), key, include_headers=[b"from", b"to", b"subject", b"message-id", b"date"]) + raw


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200, help="mails per side per round (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = ap.parse_args(argv)
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
    med = {side: statistics.median(t) for side, t in times.items()}
    p90 = {side: statistics.quantiles(t, n=10)[-1] for side, t in times.items()}
    print(f"ingest per support mail (DKIM-signed 2 KB, SQLite, loopback DNS), {args.rounds} rounds x {args.messages} mails per side:")
    for side in ("off", "cached", "cold"):
        print(f"  {side:7s} median {med[side]:6.2f} ms  p90 {p90[side]:6.2f} ms  ratio to off {med[side] / med['off']:.2f}")
    print(f"  added by verification: cached {med['cached'] - med['off']:+.2f} ms, cold {med['cold'] - med['off']:+.2f} ms per mail; {asked} DNS queries in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
