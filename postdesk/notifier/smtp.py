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
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from pathlib import Path

from postdesk.config import Config

_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")


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
        self._results: list = []
        self._broken: SubmitError | None = None

    @classmethod
    def from_config(cls, config: Config, timeout: float = 30.0) -> "Submitter":
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

    def __enter__(self) -> "Submitter":
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
    # submit() hands a mail over and collect() returns what became of every
    # mail submitted since the last collect(), in order: the queue id, or a
    # SubmitError.  When the server offers PIPELINING and CHUNKING (Postfix
    # does by default), submit() writes "RSET, MAIL, RCPT, BDAT <n> LAST" and
    # the message in one go without waiting (RFC 2920, RFC 3030 section 4),
    # so Postfix works on one mail while we compose the next, and collect()
    # reads the replies.  BDAT needs no dot-stuffing and a server must read a
    # chunk even when it refuses it, so one refused mail cannot desynchronise
    # the session; the leading RSET ends whatever the previous mail left.
    # Otherwise submit() runs the classic MAIL/RCPT/DATA exchange at once.

    def submit(self, sender: str, recipient: str, data: bytes) -> None:
        if self._broken is not None:
            self._results.append(self._broken)
            return
        if self._smtp is None:
            try:
                self._smtp = self._connect()
            except SubmitError as e:
                self._broken = e
                self._results.append(e)
                return
        if not self._pipelining:
            try:
                self._results.append(self._classic(sender, recipient, data))
            except SubmitError as e:
                if e.connection:
                    self._broken = e
                self._results.append(e)
            return
        head = f"RSET\r\nMAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nBDAT {len(data)} LAST\r\n".encode("ascii")
        try:
            self._smtp.send(head + data)
        except (smtplib.SMTPException, OSError) as e:
            self._lost(e)
            self._results.append(self._broken)
            return
        self._results.append(None)  # the replies are read by collect()

    @property
    def broken(self) -> bool:
        """The connection failed; later submissions fail until collect() has run."""
        return self._broken is not None

    def collect(self, count: int | None = None) -> list:
        """Results of the oldest ``count`` (default: all) mails submitted and
        not yet collected, in order: the queue id, or a SubmitError."""
        count = len(self._results) if count is None else count
        results, self._results = self._results[:count], self._results[count:]
        for i, r in enumerate(results):
            if r is not None:
                continue
            if self._broken is not None:
                results[i] = self._broken
                continue
            try:
                results[i] = self._replies()
            except SubmitError as e:
                results[i] = e
            except (smtplib.SMTPException, OSError) as e:
                self._lost(e)
                results[i] = self._broken
        if not self._results:
            self._broken = None  # the next submit() tries a new connection
        return results

    def send(self, sender: str, recipient: str, data: bytes) -> str:
        """Submit one mail and wait: its queue id, or SubmitError."""
        self.submit(sender, recipient, data)
        (result,) = self.collect()
        if isinstance(result, SubmitError):
            raise result
        return result

    def _replies(self) -> str:
        """The four replies of one pipelined mail, oldest first."""
        smtp = self._smtp
        replies = [smtp.getreply() for _ in range(4)]  # RSET, MAIL, RCPT, BDAT
        for (code, resp), ok, stage in zip(replies, ((250,), (250,), (250, 251), (250,)), ("rset", "mail", "rcpt", "data")):
            if code not in ok:
                err = _reply_error(code, resp, stage)
                if err.connection:
                    self._lost(err)
                raise err
        return queue_id(replies[3][1])

    def _lost(self, e: Exception) -> None:
        self._broken = e if isinstance(e, SubmitError) else SubmitError(f"{self.host}:{self.port}: {e}", connection=True)
        self._broken.connection = True
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def _classic(self, sender: str, recipient: str, data: bytes) -> str:
        smtp = self._smtp
        try:
            code, resp = smtp.mail(sender)
            if code != 250:
                self._reset()
                raise _reply_error(code, resp, "mail")
            code, resp = smtp.rcpt(recipient)
            if code not in (250, 251):
                self._reset()
                raise _reply_error(code, resp)
            code, resp = smtp.data(data)
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
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError, socket.timeout) as e:
            self.close()
            raise SubmitError(f"{self.host}:{self.port}: {e}", connection=True) from e
        return queue_id(resp)

    def _reset(self) -> None:
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
