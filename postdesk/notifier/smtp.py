"""Submit composed mail over SMTP: one connection per pass, opened on first use.

The default target is the local Postfix (``[notifier] smtp = 127.0.0.1:25``);
STARTTLS and AUTH are there for a remote relay.  We speak MAIL/RCPT/DATA
ourselves instead of ``smtplib.sendmail`` because we need the text of the
final 250 reply: Postfix puts its queue id there ("250 2.0.0 Ok: queued as
4BxT2k1Z3n", smtpd(8)), and that id is what ties our log line to Postfix's.

Failures become ``SubmitError``: ``permanent`` for 5xx replies to RCPT or
to the message (RFC 5321 section 4.2.1: do not retry the same transaction),
temporary for 4xx, for a refused, dropped or timed-out connection, and for
trouble that is ours rather than the recipient's: TLS/AUTH setup, 530, a
refused MAIL FROM (a configuration problem should hold mail, not fail it).  ``connection`` says
the session is gone, so the pass stops instead of failing every queued mail
against a dead server.

One mail is in flight at a time (see "submission" below), so a dropped
connection leaves at most one mail whose fate is unknown: written in full,
its final reply lost.  That mail is retried and may arrive twice; it is the
one duplicate window on the SMTP side (``postdesk.store.outbox`` describes
the store side).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Iterable, Sized
from pathlib import Path
from typing import Protocol

from postdesk.config import Config

_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")


class Streamed(Sized, Iterable[bytes], Protocol):
    """A message written as it is read (``compose.Body``): its exact length
    first, then pieces that each end in CRLF."""


_DOT = re.compile(rb"^\.", re.M)


class SubmitError(Exception):
    def __init__(self, text: str, code: int | None = None, *, permanent: bool = False, connection: bool = False):
        super().__init__(text)
        self.code = code
        self.permanent = permanent
        self.connection = connection

    def __str__(self) -> str:
        text = " ".join(str(self.args[0]).split())
        return f"{self.code} {text}" if self.code and not text.startswith(str(self.code)) else text


def queue_id(reply: bytes | str) -> str:
    """The Postfix queue id in a 250 reply to DATA, "" when there is none."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    m = _QUEUED_AS.search(reply)
    return m.group(1) if m else ""


def _reply_error(code: int, resp: bytes | str, stage: str = "") -> SubmitError:
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    # A 5xx for the recipient or the message is permanent (RFC 5321 4.2.1).
    # But a refusal of MAIL FROM, or 530 "STARTTLS / authentication required"
    # (RFC 3207, RFC 4954), is about our own sender or session: every mail
    # would fail the same way, so hold the mail and let the admin fix the
    # [notifier] settings (the log line says why; retry_max_age still ends it).
    ours = stage == "mail" or code == 530
    # 421: the server is closing the channel (RFC 5321 3.8).
    return SubmitError(f"{code} {resp}", code, permanent=500 <= code < 600 and not ours, connection=code == 421)


class Submitter:
    """A lazily opened SMTP session.  Use as a context manager, or call close()."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool = False,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        local_hostname: str | None = None,
        pipelining: bool = True,
    ):
        self.host, self.port = host, port
        self.starttls, self.username, self.password = starttls, username, password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.pipelining = pipelining
        self._smtp: smtplib.SMTP | None = None
        self._pipelining = False  # this session: PIPELINING and CHUNKING offered
        self._broken: SubmitError | None = None

    @classmethod
    def from_config(cls, config: Config, timeout: float = 30.0) -> Submitter:
        n = config.notifier
        host, _, port = n.smtp.rpartition(":")
        password = ""
        if n.username and n.password_file:
            password = Path(n.password_file).read_text(encoding="utf-8").strip()
        return cls(
            host.strip("[]"),
            int(port),
            starttls=n.starttls,
            username=n.username,
            password=password,
            timeout=timeout,
            local_hostname=config.organization.reply_to.rpartition("@")[2] or None,
        )

    def __enter__(self) -> Submitter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        try:
            smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
        except smtplib.SMTPConnectError as e:
            raise SubmitError(f"connect to {self.host}:{self.port}: {e.smtp_code} {e.smtp_error!r}", e.smtp_code, connection=True) from e
        except (OSError, smtplib.SMTPException) as e:
            raise SubmitError(f"connect to {self.host}:{self.port}: {e}", connection=True) from e
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password)
            self._pipelining = self.pipelining and smtp.has_extn("pipelining") and smtp.has_extn("chunking")
            if self._pipelining:
                # Each mail is written while earlier ones are unanswered: without
                # this, Nagle's algorithm holds it until the server's ACK.
                assert smtp.sock is not None  # connected above
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, smtplib.SMTPException) as e:
            # Wrong TLS or AUTH setup: hold the mail (temporary) and say why.
            try:
                smtp.close()
            finally:
                raise SubmitError(f"session setup with {self.host}:{self.port}: {e}", connection=True) from e
        return smtp

    # -- submission ------------------------------------------------------------
    #
    # One mail in flight, never more.  When the server offers PIPELINING and
    # CHUNKING (Postfix does by default), send() writes "RSET, MAIL, RCPT,
    # BDAT <n> LAST" and the message in one go (RFC 2920, RFC 3030 section 4),
    # then reads the four replies before the next mail is written.  BDAT needs
    # no dot-stuffing and a server must read a chunk even when it refuses it,
    # so one refused mail cannot desynchronise the session; the leading RSET
    # ends whatever the previous mail left.  Otherwise send() runs the classic
    # MAIL/RCPT/DATA exchange.
    #
    # Why not several mails in flight: when the connection fails, every mail
    # written but not yet answered has an unknown fate (Postfix may have
    # queued it, its 250 unread), and retrying them all resends them.  With
    # one in flight, a failed write means the message never fully reached the
    # server (its BDAT chunk is incomplete, so it cannot be queued) and is
    # safe to retry; the only unknown is a mail written in full whose final
    # reply was lost (connection dropped, or no reply within ``timeout``).
    # That one mail is retried and may arrive twice: the one duplicate window
    # on the SMTP side, at most one mail per failed connection.  Its error
    # says so ("may have been queued").  bench/notifier.py: one in flight
    # keeps the notifier above half of smtp-source's rate.

    def send(self, sender: str, recipient: str, data: bytes | Streamed) -> str:
        """Submit one mail and wait for the server: its queue id, or SubmitError.

        ``data`` is the message, or a ``Streamed`` one (attachments read as
        it is written).  An error while reading it (a blob missing or not
        matching its sha256, the database gone) ends the session before the
        message was complete, so nothing is queued, and is raised as it is.

        After a connection failure (``connection`` set) every later call fails
        the same way at once, without a new connection: the worker ends the
        pass and opens a new submitter for the next one.
        """
        if self._broken is not None:
            raise self._broken
        if self._smtp is None:
            try:
                self._smtp = self._connect()
            except SubmitError as e:
                self._broken = e
                raise
        try:
            if not self._pipelining:
                return self._classic(sender, recipient, data)
            return self._pipelined(sender, recipient, data)
        except SubmitError as e:
            if e.connection and self._broken is None:
                self._lost(e)
            raise

    @property
    def broken(self) -> bool:
        """The connection failed; every later send() fails at once."""
        return self._broken is not None

    def _write(self, smtp: smtplib.SMTP, first: bytes, data: bytes | Streamed, stuff: bool = False) -> None:
        """``first`` then the message; ``stuff``: dot-stuffed for DATA
        (RFC 5321 4.5.2; a streamed message's pieces start at line starts).

        A write error is a SubmitError (connection): the message did not
        reach the server whole, so it cannot have been queued.  An error
        reading a streamed message closes the session (the server holds a
        partial message it will drop) and is raised unchanged."""
        try:
            if isinstance(data, bytes):
                smtp.send(first + data)
                return
            smtp.send(first)
            for piece in data:
                smtp.send(_DOT.sub(b"..", piece) if stuff else piece)
        except (smtplib.SMTPException, OSError) as e:
            raise SubmitError(f"{self.host}:{self.port}: {e}", connection=True) from e
        except BaseException as e:
            self._lost(SubmitError(f"{self.host}:{self.port}: session ended: the message could not be read ({e})", connection=True))
            raise

    def _pipelined(self, sender: str, recipient: str, data: bytes | Streamed) -> str:
        smtp = self._smtp
        assert smtp is not None  # send() connected
        head = f"RSET\r\nMAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nBDAT {len(data)} LAST\r\n".encode("ascii")
        # Not all of it reaching the server means an incomplete BDAT chunk:
        # the mail cannot have been queued.  Safe to retry.
        self._write(smtp, head, data)
        error: SubmitError | None = None
        stages = (("rset", (250,)), ("mail", (250,)), ("rcpt", (250, 251)), ("data", (250,)))
        for stage, ok in stages:
            try:
                code, resp = smtp.getreply()
            except (smtplib.SMTPException, OSError) as e:
                if error is not None:  # refused already: not queued, but the session is gone
                    self._lost(SubmitError(f"{self.host}:{self.port}: {e}", connection=True))
                    raise error from e
                # The whole mail was written: the server may have queued it.
                # Later mails get the plain error (they were never written).
                lost = SubmitError(f"{self.host}:{self.port}: {e}", connection=True)
                self._lost(lost)
                raise SubmitError(f"{lost} (reply lost after the whole mail was written: it may have been queued)", connection=True) from e
            if code not in ok and error is None:
                error = _reply_error(code, resp, stage)
                if error.connection:
                    raise error  # 421: the server closes; nothing more to read
            if stage == "data" and error is None:
                return queue_id(resp)
        assert error is not None  # the loop returned unless a stage was refused
        raise error

    def _lost(self, e: SubmitError) -> None:
        self._broken = e
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def _classic(self, sender: str, recipient: str, data: bytes | Streamed) -> str:
        smtp = self._smtp
        assert smtp is not None  # send() connected
        try:
            code, resp = smtp.mail(sender)
            if code != 250:
                self._reset()
                raise _reply_error(code, resp, "mail")
            code, resp = smtp.rcpt(recipient)
            if code not in (250, 251):
                self._reset()
                raise _reply_error(code, resp)
            code, resp = smtp.data(data) if isinstance(data, bytes) else self._data_streamed(smtp, data)
            if code != 250:  # smtplib returns, not raises, a refusal after the dot
                self._reset()
                raise _reply_error(code, resp)
        except smtplib.SMTPDataError as e:  # a refusal of the DATA command itself
            err = _reply_error(e.smtp_code, e.smtp_error)
            if err.connection:
                self.close()
            else:
                self._reset()
            raise err from e
        except SubmitError as e:
            if e.connection:
                self.close()
            raise
        except (TimeoutError, smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as e:
            self.close()
            raise SubmitError(f"{self.host}:{self.port}: {e}", connection=True) from e
        return queue_id(resp)

    def _data_streamed(self, smtp: smtplib.SMTP, data: Streamed) -> tuple[int, bytes]:
        """``smtp.data`` for a streamed message: DATA, 354, the dot-stuffed
        pieces, the final dot (smtplib's own needs the message whole)."""
        smtp.putcmd("data")
        code, resp = smtp.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, resp)
        self._write(smtp, b"", data, stuff=True)
        smtp.send(b".\r\n")
        return smtp.getreply()

    def _reset(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            try:
                smtp.close()
            except OSError:
                pass
