"""A DNS server on loopback for tests, benchmarks and the demo (dnslib).

    with DNSServer({"example.org": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]}}) as dns:
        config = make_config(dns={"nameservers": [dns.address]})

Serves a dict ``{name: {"TXT"|"A"|"AAAA"|"MX": [values]}}`` over UDP on
127.0.0.1 at a free port.  A name absent from the dict is NXDOMAIN; a name
present without the type asked is an empty NOERROR answer.  ``servfail``
names answer SERVFAIL and ``timeout`` names get no answer at all (the
resolver's timeout runs out), the two ways DNS fails in practice.  Records
can be changed while the server runs (``set``, ``servfail``, ``timeout``);
``queries`` lists what was asked, so a test can see the cache at work.

TXT values longer than 255 octets (DKIM keys) are split into several
character-strings, as RFC 7208 section 3.3 and RFC 6376 section 3.6.2.2
expect a publisher to do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSError
from dnslib.server import BaseResolver
from dnslib.server import DNSServer as _DNSServer

TTL = 300


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _chunks(value: str | bytes) -> list[bytes]:
    data = value.encode() if isinstance(value, str) else value
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


class _QuietLogger:
    """dnslib's DNSLogger prints every packet; tests want silence."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class _Drop(DNSError):
    """Raised for a ``timeout`` name: dnslib's handler then sends nothing."""


class _Records(BaseResolver):
    def __init__(self, server: DNSServer):
        self.server = server

    def resolve(self, request, handler):
        qname = str(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        name = _norm(qname)
        with self.server.lock:
            self.server.queries.append((name, qtype))
            if name in self.server.timeouts:
                raise _Drop(f"dropping {name}")
            servfail = name in self.server.servfails
            records = self.server.records.get(name)
            values = list((records or {}).get(qtype, ()))
        reply = request.reply()
        if servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in values:
            if qtype == "TXT":
                rdata = TXT(_chunks(value))
            elif qtype == "A":
                rdata = A(value)
            elif qtype == "AAAA":
                rdata = AAAA(value)
            elif qtype == "MX":
                pref, _, host = str(value).partition(" ") if " " in str(value) else ("10", "", str(value))
                rdata = MX(host, int(pref))
            else:
                continue
            reply.add_answer(RR(qname, getattr(QTYPE, qtype), rdata=rdata, ttl=TTL))
        return reply


class DNSServer:
    """A context manager: the server runs between ``__enter__`` and ``__exit__``."""

    def __init__(self, records: dict[str, dict[str, list]] | None = None, *, servfail: Iterable[str] = (), timeout: Iterable[str] = (), port: int = 0):
        self.lock = threading.Lock()
        self.records: dict[str, dict[str, list]] = {}
        self.servfails = {_norm(n) for n in servfail}
        self.timeouts = {_norm(n) for n in timeout}
        self.queries: list[tuple[str, str]] = []
        for name, rrs in (records or {}).items():
            self.set(name, **rrs)
        self._server: _DNSServer | None = None
        self.port = port  # 0: the kernel picks a free one

    @property
    def address(self) -> str:
        """For ``[dns] nameservers``: "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, **rrs: list) -> None:
        """Publish (replace) records of ``name``: ``set("a.org", TXT=[...], A=[...])``."""
        with self.lock:
            self.records.setdefault(_norm(name), {}).update({k.upper(): list(v) for k, v in rrs.items()})

    def remove(self, name: str) -> None:
        with self.lock:
            self.records.pop(_norm(name), None)

    def servfail(self, name: str, on: bool = True) -> None:
        with self.lock:
            (self.servfails.add if on else self.servfails.discard)(_norm(name))

    def timeout(self, name: str, on: bool = True) -> None:
        with self.lock:
            (self.timeouts.add if on else self.timeouts.discard)(_norm(name))

    def start(self) -> DNSServer:
        # Port 0: the kernel picks a free port; we read it back.
        self._server = _DNSServer(_Records(self), address="127.0.0.1", port=self.port, logger=_QuietLogger())
        self.port = self._server.server.server_address[1]
        # The kernel may hand out a port an earlier server of this process
        # had: its answers, cached by the process-wide resolver for that
        # address, are not this server's (a test saw the last one's "no SPF
        # record" instead of its own).
        from postdesk.auth.dns import forget

        forget(self.address)
        # A short poll interval: stop() returns within 50 ms, not 500.
        self._thread = threading.Thread(target=self._server.server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.server.shutdown()
            self._server.server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> DNSServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
