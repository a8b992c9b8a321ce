"""One LMTP session (RFC 2033) and what a delivered message is answered.

``LMTPSession`` is aiosmtpd's ``LMTP`` with what Postfix's lmtp(8) client
and postdesk need on top:

- LHLO advertises PIPELINING, ENHANCEDSTATUSCODES, SIZE (``[limits]
  max_message_bytes``: Postfix then bounces a larger message itself, with
  5.3.4, before sending it), 8BITMIME, SMTPUTF8, and XFORWARD on the unix
  socket only (``postdesk.lmtp.xforward`` says why);
- DATA is read here, not by aiosmtpd: RFC 2033 4.2 wants one reply per
  accepted recipient after the final dot, and aiosmtpd answers a too-large
  message or a long line with a single reply, which leaves an LMTP client
  waiting for the rest.  Lines of any length are taken (the size limit
  bounds memory); past the limit the rest is read and dropped, and each
  recipient gets ``outcomes.TOO_BIG``, as the milter and the pipe answer;
- ``stop()`` answers ``421 4.3.2`` to a session waiting for a command and
  closes it; a session whose message is being recorded gets its replies
  first.

``Handler`` holds what is not protocol: MAIL (its SIZE) and RCPT (a
recipient that is not a system address is misrouted: ``451 4.3.5``, kept
by Postfix), and ``deliver``, which runs ``postdesk.ingest.ingest`` on a
worker thread and turns the outcome into the recipients' replies from the
one table ``postdesk.outcomes``: 250 only after the store committed, 451
4.3.0 when it could not.  The one log line per message is ingest's, as
for the milter and the pipe.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import syntax

from postdesk.config import Config
from postdesk.filter.decision import Envelope
from postdesk.lmtp.xforward import ATTRIBUTES, XForward, XForwardError
from postdesk.lmtp.xforward import parse as parse_xforward
from postdesk.mail import strip_brackets
from postdesk.outcomes import ANSWERS, FAILURE, MISROUTED, SHUTDOWN, TEMPFAIL_TEXT, TOO_BIG, Outcome, Result, too_big_reason

if TYPE_CHECKING:
    from postdesk.ingest import MessageStore

log = logging.getLogger("postdesk")

SHUTDOWN_TEXT = "postdesk lmtp is shutting down, try again later"
EMPTY_TEXT = "empty message: no data after DATA"


class Sessions:
    """The open LMTP sessions, so a stop can answer them 421 and wait for
    the ones recording a message."""

    def __init__(self) -> None:
        self.open: set[LMTPSession] = set()
        self.stopping = False
        self._idle: asyncio.Event | None = None

    def add(self, session: LMTPSession) -> None:
        self.open.add(session)

    def discard(self, session: LMTPSession) -> None:
        self.open.discard(session)
        if not self.open and self._idle is not None:
            self._idle.set()

    async def stop(self, drain: float) -> int:
        """421 to every idle session, wait up to ``drain`` seconds for the
        busy ones (each closes after its replies); returns how many were
        still open and cut off (Postfix defers their mail)."""
        self.stopping = True
        self._idle = asyncio.Event()
        for session in list(self.open):
            if not session.busy:
                session.shutdown()
        if self.open:
            try:
                await asyncio.wait_for(self._idle.wait(), drain)
            except TimeoutError:
                pass
        left = len(self.open)
        for session in list(self.open):
            session.shutdown()
        return left


class LMTPSession(LMTP):
    """One connection from Postfix's lmtp(8) client."""

    def __init__(self, handler: Handler, sessions: Sessions, *, xforward: bool, **kwargs: Any) -> None:
        # data_size_limit=None: the size is ours to check (see smtp_DATA).
        super().__init__(handler, data_size_limit=None, decode_data=False, enable_SMTPUTF8=True, **kwargs)
        self.handler = handler
        self.sessions = sessions
        self.xforward_allowed = xforward
        self.xforward = XForward()
        self.busy = False  # between DATA and its replies: not to be cut off at stop
        self.closed = False

    # -- connection life -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.closed = True
        self.sessions.discard(self)
        super().connection_lost(error)

    def shutdown(self) -> None:
        """Say 421 and close (RFC 5321 3.8: a server may do so at any time)."""
        if self.closed or self.transport is None:
            return
        self.closed = True
        try:
            self._writer.write(f"{SHUTDOWN.lmtp_reply(SHUTDOWN_TEXT)}\r\n".encode())
        except (AttributeError, RuntimeError, OSError):
            pass  # the peer went away meanwhile
        self.transport.close()

    def _set_post_data_state(self) -> None:
        # The end of a transaction (DATA done, RSET, LHLO): the forwarded
        # client belongs to it, not to the next message.
        super()._set_post_data_state()
        self.xforward = XForward()

    # -- commands ----------------------------------------------------------------------

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Syntax: LHLO hostname")
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname, "PIPELINING", "ENHANCEDSTATUSCODES", f"SIZE {self.handler.config.limits.max_message_bytes}", "8BITMIME", "SMTPUTF8"]
        if self.xforward_allowed:
            lines.append("XFORWARD " + " ".join(ATTRIBUTES))
        for line in lines[:-1]:
            await self.push(f"250-{line}")
        await self.push(f"250 {lines[-1]}")

    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, arg: str | None) -> None:
        if not self.xforward_allowed:
            # On TCP anyone could claim to be a trusted network (module docstring).
            log.warning("XFORWARD refused: only the unix socket takes it (peer %s)", self.session.peer if self.session else "?")
            await self.push("550 5.7.0 XFORWARD is accepted on the unix socket only")
            return
        if await self.check_helo_needed("LHLO"):
            return
        assert self.envelope is not None
        if self.envelope.mail_from:
            await self.push("503 5.5.1 XFORWARD inside a mail transaction")
            return
        try:
            self.xforward = parse_xforward(arg, self.xforward)
        except XForwardError as e:
            log.warning("XFORWARD refused: %s", e)
            await self.push(f"501 5.5.4 {e}")
            return
        await self.push("250 2.0.0 Ok")

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed("LHLO"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        self.busy = True
        try:
            started = time.monotonic()
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            limit = self.handler.config.limits.max_message_bytes
            raw, size = await self._read_data(limit)
            replies = await self.handler.deliver(self, raw, size, started)
            self._set_post_data_state()
            # RFC 2033 4.2: one reply per accepted recipient, in RCPT order.
            await self.push("\r\n".join(replies))
        finally:
            self.busy = False
            if self.sessions.stopping:
                self.shutdown()

    async def _read_data(self, limit: int) -> tuple[bytes | None, int]:
        """The message up to the final dot, dot-unstuffed (RFC 5321 4.5.2);
        ``None`` when it had more than ``limit`` bytes (all read, none kept)."""
        data = bytearray()
        size = 0
        at_line_start = True
        while True:
            try:
                piece = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as e:
                # A line longer than the reader's buffer: take what it holds.
                # e.consumed stops short of a separator split across reads.
                piece = await self._reader.read(e.consumed)
            except asyncio.IncompleteReadError:
                raise ConnectionResetError("connection closed during DATA") from None
            if at_line_start:
                if piece == b".\r\n":
                    break
                if piece.startswith(b"."):
                    piece = piece[1:]
            at_line_start = piece.endswith(b"\r\n")
            size += len(piece)
            if size <= limit:
                data += piece
            elif data:
                data = bytearray()  # over the limit: keep nothing, read on to the dot
        return (bytes(data) if size <= limit else None), size


class Handler:
    """aiosmtpd's MAIL and RCPT hooks, and ``deliver``: ingest and the replies."""

    def __init__(self, config: Config, store: MessageStore, ingest: Callable, executor: Executor) -> None:
        self.config = config
        self.store = store
        self.ingest = ingest
        # ingest waits for DNS and for the store's writer: never on the event loop.
        self.executor = executor

    async def handle_MAIL(self, server: LMTPSession, session, envelope, address: str, mail_options: list[str]) -> str:
        limit = self.config.limits.max_message_bytes
        for option in mail_options:
            key, _, value = option.partition("=")
            if key == "SIZE" and value.isdigit() and int(value) > limit:
                # RFC 1870: refused before the data is sent, in the words of every adapter.
                reason = too_big_reason(limit, int(value))
                log_result(server, address, [], Result(Outcome.REJECTED, reason=reason), time.monotonic())
                return TOO_BIG.lmtp_reply(reason)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: LMTPSession, session, envelope, address: str, rcpt_options: list[str]) -> str:
        if not self.config.is_system_address(strip_brackets(address)):
            # Routed here by a transport map that sends too much: keep the
            # mail in Postfix's queue (451) while the admin fixes the map.
            reason = f"<{address}> is not a system address: misrouted to postdesk lmtp (check transport_maps)"
            log_result(server, envelope.mail_from or "", [address], Result(Outcome.DEFERRED, reason=reason), time.monotonic())
            return MISROUTED.lmtp_reply(f"<{address}> is not a postdesk address; check transport_maps")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def deliver(self, server: LMTPSession, raw: bytes | None, size: int, started: float) -> list[str]:
        """The replies for the transaction's recipients, once ``raw`` is recorded (or not)."""
        env = server.envelope
        assert env is not None
        rcpts = list(env.rcpt_tos)
        envelope = make_envelope(server, env.mail_from or "", rcpts)
        qid = envelope.queue_id or "NOQUEUE"
        limit = self.config.limits.max_message_bytes
        if raw is None:
            reason = too_big_reason(limit, size)
            log_result(server, envelope.sender, rcpts, Result(Outcome.REJECTED, reason=reason), started)
            return [TOO_BIG.lmtp_reply(reason)] * len(rcpts)
        if not raw.strip():
            log_result(server, envelope.sender, rcpts, Result(Outcome.REJECTED, reason=EMPTY_TEXT), started)
            return [ANSWERS[Outcome.REJECTED].lmtp_reply(EMPTY_TEXT)] * len(rcpts)
        try:
            record = functools.partial(self.ingest, raw, envelope, self.store, self.config)
            result = await asyncio.get_running_loop().run_in_executor(self.executor, record)
        except Exception as e:
            # Not recorded, so not accepted: Postfix keeps the message and
            # retries; the store records a redelivery once (same Message-ID).
            log.error('%s: outcome=tempfail reason="%s: %s"', qid, type(e).__name__, e, exc_info=True)
            return [FAILURE.lmtp_reply(TEMPFAIL_TEXT)] * len(rcpts)
        answer = ANSWERS[result.outcome]
        if answer.milter == "accept":
            ticket = f" ticket {result.ticket}" if result.ticket is not None else ""
            text = f"{qid}{ticket} {result.outcome.value}"
        else:
            text = result.reason or (result.decision.reason if result.decision else "") or result.outcome.value
        return [answer.lmtp_reply(text)] * len(rcpts)


def make_envelope(server: LMTPSession, sender: str, rcpts: list[str]) -> Envelope:
    """The filter's Envelope: the forwarded client, never the LMTP peer
    (that is Postfix, on loopback or a socket: it vouches for nobody)."""
    xf = server.xforward
    return Envelope(
        sender=strip_brackets(sender),
        recipients=tuple(strip_brackets(r) for r in rcpts),
        queue_id=xf.ident,
        client_address=xf.addr,
        client_name=xf.name,
        helo=xf.helo,
    )


def log_result(server: LMTPSession, sender: str, rcpts: list[str], result: Result, started: float) -> None:
    """ingest's log line for a message refused before ingest."""
    from postdesk.ingest import log_result as ingest_log_result

    ingest_log_result(make_envelope(server, sender, rcpts), result, started)
