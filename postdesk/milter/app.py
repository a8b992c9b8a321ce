"""The pymilter adapter: one ``PostdeskMilter`` per SMTP connection.

It collects the envelope and (only for support mail) the message during the
SMTP session, calls ``postdesk.ingest.ingest`` at end-of-message, edits the
message (Subject tag, ``X-Postdesk-*`` headers) and answers Postfix from the
one table ``postdesk.outcomes.ANSWERS``.

Where the time goes: mail that is not ours is accepted at DATA,
so Postfix sends us neither headers nor body and the milter costs almost
nothing; only support mail and authenticated staff mail are read.

Nothing is accepted that is not recorded: every failure (store locked or
unreachable, disk full, a bug) becomes ``451 4.3.0`` and TEMPFAIL, the
traceback logged once here, at the adapter boundary.  The sender's MTA
retries; the store records a redelivered message once (same Message-ID).
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import Milter

from postdesk.auth import headers as arheaders
from postdesk.auth.result import UNCHECKED
from postdesk.config import Config
from postdesk.filter.decision import Envelope
from postdesk.mail import OUTCOME_HEADER, TICKET_HEADER, strip_brackets
from postdesk.milter import subject as subj
from postdesk.milter.spool import Spool
from postdesk.outcomes import ANSWERS, FAILURE, TEMPFAIL_TEXT, TOO_BIG, Answer, Outcome, reply_text, too_big_reason
from postdesk.store import groupcommit

if TYPE_CHECKING:
    from postdesk.ingest import MessageStore  # not at run time: ingest loads the filter and the checkers

log = logging.getLogger("postdesk")

def actions_for(config: Config) -> int:
    """The milter actions we use, and nothing more (negotiated with Postfix)."""
    flags = Milter.ADDHDRS | Milter.CHGHDRS
    if config.milter.deliver == "discard":
        flags |= Milter.DELRCPT
    return flags


def action_names(flags: int) -> str:
    names = [n for n in ("ADDHDRS", "CHGHDRS", "DELRCPT") if flags & getattr(Milter, n)]
    return ",".join(names)


def quiet_boundary(callback):
    """For callbacks negotiated as "no reply" (connect, MAIL, RCPT, header, body).

    Postfix does not wait for their answer (milter protocol 6, SMFIP_NR_*),
    which saves a round trip each on every SMTP session, ours or not.  They
    cannot refuse anything, so a failure is remembered and answered with
    451 4.3.0 at the next callback that replies (DATA, end of headers, end
    of data).
    """

    @functools.wraps(callback)
    def wrapper(self, *args):
        try:
            return callback(self, *args)
        except Exception as e:
            log.error("%s: %s failed: %s: %s", self.queue_id() or "NOQUEUE", callback.__name__, type(e).__name__, e, exc_info=True)
            self.failed = True
            return Milter.CONTINUE

    return wrapper


def boundary(callback):
    """Catch everything a callback raises: log once, answer 451 4.3.0.

    pymilter's exception policy (set to TEMPFAIL in server.run) is the last
    net; catching here lets us log the queue id and give a reason.
    """

    @functools.wraps(callback)
    def wrapper(self, *args):
        try:
            return callback(self, *args)
        except Exception as e:
            log.error("%s: %s failed: %s: %s", self.queue_id() or "NOQUEUE", callback.__name__, type(e).__name__, e, exc_info=True)
            return self.tempfail()

    return wrapper


class PostdeskMilter(Milter.Base):
    """State of one SMTP connection (libmilter runs each in its own thread)."""

    def __init__(self, config: Config, store: MessageStore, ingest: Callable | None = None):
        self.config = config
        self.store = store
        if ingest is None:
            from postdesk.ingest import ingest as default_ingest

            ingest = default_ingest
        self.ingest: Callable = ingest
        self.wanted_actions = actions_for(config)
        self.client_addr = ""
        self.client_name = ""
        self.helo = ""  # HELO/EHLO name: SPF's identity for the null sender (RFC 7208 2.4)
        self.mta_name = ""  # macro j: our MTA's name, the default authserv-id
        self.spool: Spool | None = None
        self._reset()

    # -- per-message state ------------------------------------------------------

    def _reset(self) -> None:
        spool: Spool | None = getattr(self, "spool", None)
        if spool is not None:
            spool.close()
        self.spool = None
        self.sender = ""
        self.sasl = ""
        self.size_hint = 0
        self.recipients: list[str] = []  # as received ("<a@b>"), for delrcpt
        self.system_rcpts: list[str] = []
        self.subject_raw: bytes | None = None
        self.own_headers = {TICKET_HEADER.lower(): 0, OUTCOME_HEADER.lower(): 0}
        self.ar_values: list[str] = []  # every Authentication-Results value, in order (indexes for chgheader)
        self.ar_below: list[bool] = []  # ... and whether a Received: came before it (then it is from outside)
        self.seen_received = False
        self.over_limit = 0  # the size that went over max_message_bytes (refused at eoh or eom)
        self.failed = False  # a no-reply callback failed: 451 at DATA, eoh or eom
        self.started = 0.0

    def queue_id(self) -> str:
        try:
            return self.getsymval("i") or ""
        except Exception:
            return ""

    def tempfail(self, reason: str = TEMPFAIL_TEXT, a: Answer = FAILURE) -> int:
        self.setreply(a.smtp_code, a.dsn, reply_text(reason))
        return Milter.TEMPFAIL

    def reject_too_big(self, size: int) -> int:
        if self.spool is not None and not self.system_rcpts:
            # A staff member's own outgoing mail: not ours to refuse.  Stop
            # reading it; it goes out unrecorded (logged).
            log.warning("%s: from=<%s> size=%d over max_message_bytes: staff reply not recorded", self.queue_id() or "NOQUEUE", self.sender, size)
            self._reset()
            return Milter.ACCEPT
        self.setreply(TOO_BIG.smtp_code, TOO_BIG.dsn, reply_text(too_big_reason(self.config.limits.max_message_bytes, size)))
        return Milter.REJECT

    def staff_candidate(self) -> bool:
        """An authenticated sender whose SASL login maps to a staff address.

        Such mail may be a staff member replying straight to a customer, so
        we look at its Subject even without a system-address recipient.  The
        filter makes the real trust decision.
        """
        login = self.sasl.strip().lower()
        if not login:
            return False
        if "@" in login:
            return self.config.matches_staff(login)
        sender = self.sender.lower()
        return sender.partition("@")[0] == login and self.config.matches_staff(sender)

    # -- negotiation --------------------------------------------------------------

    def negotiate(self, opts):
        rc = super().negotiate(opts)
        if rc == Milter.CONTINUE:
            # Ask only for the actions we use: ADDHDRS/CHGHDRS for the tag and
            # our headers, DELRCPT for deliver = "discard".
            opts[0] = self._actions = opts[0] & self.wanted_actions
        return rc

    # -- callbacks ------------------------------------------------------------------

    @Milter.noreply
    @quiet_boundary
    def connect(self, hostname, family, hostaddr):
        self.client_name = hostname or ""
        if isinstance(hostaddr, tuple):
            self.client_addr = str(hostaddr[0])
        elif isinstance(hostaddr, str) and family != socket.AF_UNIX:
            self.client_addr = hostaddr  # Milter.testctx passes the bare IP
        return Milter.CONTINUE

    @Milter.noreply
    @quiet_boundary
    def hello(self, hostname):
        self.helo = hostname or ""
        if not self.mta_name:
            self.mta_name = self.getsymval("j") or ""
        return Milter.CONTINUE

    @Milter.noreply
    @quiet_boundary
    def envfrom(self, mailfrom, *params):
        self._reset()
        self.sender = strip_brackets(mailfrom)
        self.sasl = self.getsymval("{auth_authen}") or ""
        if not self.client_addr:
            self.client_addr = (self.getsymval("{client_addr}") or "").strip("[]")
        for p in params:
            key, _, value = p.partition("=")
            if key.upper() == "SIZE" and value.isdigit():
                self.size_hint = int(value)
        return Milter.CONTINUE

    @Milter.noreply
    @quiet_boundary
    def envrcpt(self, to, *params):
        if self.config.is_system_address(strip_brackets(to)):
            self.system_rcpts.append(to)
        self.recipients.append(to)
        return Milter.CONTINUE

    @boundary
    def data(self):
        if self.failed:
            return self.tempfail()
        if self.system_rcpts and self.size_hint > self.config.limits.max_message_bytes:
            # RFC 1870 SIZE= announced more than we take: refuse before the
            # data is sent.  Mail without a support address is Postfix's
            # business (message_size_limit), not ours.
            return self.reject_too_big(self.size_hint)
        if not self.system_rcpts and not self.staff_candidate():
            # The fast path: not ours.  ACCEPT here means Postfix sends
            # neither headers nor body to this milter for this message.
            return Milter.ACCEPT
        self.started = time.monotonic()
        self.spool = Spool(self.config.milter.spool_memory)
        return Milter.CONTINUE

    # Headers and body chunks are negotiated "no reply" (SMFIP_NR_HDR,
    # SMFIP_NR_BODY): Postfix streams them without waiting for an answer to
    # each, which saved a round trip per header on every support message
    # (docs/postfix.md, "Where the time goes").  They cannot refuse, so a
    # message over max_message_bytes is noted here and refused at end of
    # headers or end of data, where we reply; a failure is answered at eoh
    # or eom like the envelope callbacks' (quiet_boundary).

    @Milter.noreply
    @Milter.decode("bytes")
    @quiet_boundary
    def header(self, name, value):
        if self.spool is None or self.over_limit:
            return Milter.CONTINUE
        if isinstance(value, str):  # a harness that hands us text
            value = value.encode("utf-8", "surrogateescape")
        self.spool.header(name, value)
        lname = name.lower()
        if lname == "subject" and self.subject_raw is None:
            self.subject_raw = value
        elif lname in self.own_headers:
            self.own_headers[lname] += 1
        elif lname == "received":
            self.seen_received = True
        elif lname == "authentication-results":
            self.ar_values.append(value.decode("utf-8", "replace"))
            self.ar_below.append(self.seen_received)
        self._check_size()
        return Milter.CONTINUE

    def _check_size(self) -> None:
        """Over max_message_bytes: keep no more of it (answered at eoh or eom)."""
        assert self.spool is not None
        if self.spool.size > self.config.limits.max_message_bytes:
            self.over_limit = self.spool.size
            self.spool.discard()

    def _answered_early(self, nothing_kept: int) -> int | None:
        """What end of headers and end of data answer before reading the
        message, else None: 451 for a failed no-reply callback, ``nothing_kept``
        when the message is not ours (no spool), 552 over the size limit."""
        if self.failed:
            return self.tempfail()
        if self.spool is None:
            return nothing_kept
        if self.over_limit:
            return self.reject_too_big(self.over_limit)
        return None

    @boundary
    def eoh(self):
        early = self._answered_early(Milter.CONTINUE)
        if early is not None:
            return early
        assert self.spool is not None
        self.spool.end_of_headers()
        if not self.system_rcpts:
            # A staff candidate: only a [#N] tag makes it a direct reply.
            if subj.find_tag(subj.decode(self.subject_raw), self.config.organization.tag) is None:
                return Milter.ACCEPT
        return Milter.CONTINUE

    @Milter.noreply
    @quiet_boundary
    def body(self, chunk):
        if self.spool is None:
            return Milter.CONTINUE
        if self.over_limit:
            self.over_limit += len(chunk)
            return Milter.CONTINUE
        self.spool.body(chunk)
        self._check_size()
        return Milter.CONTINUE

    @boundary
    def eom(self):
        early = self._answered_early(Milter.ACCEPT)
        if early is not None:
            return early
        assert self.spool is not None
        envelope = Envelope(
            sender=self.sender,
            recipients=tuple(strip_brackets(r) for r in self.recipients),
            queue_id=self.queue_id(),
            client_address=self.client_addr,
            sasl_username=self.sasl,
            client_name=self.client_name,
            helo=self.helo,
        )
        raw = self.spool.read()
        self.spool.close()
        self.spool = None
        try:
            # The DNS of SPF/DKIM/DMARC waits here, on this session's own
            # thread (ingest.prepare); the store's part waits for its batch
            # on a writer thread (postdesk.store.groupcommit), never on this
            # one (see make_factory).
            eom = time.monotonic()
            result = self.ingest(raw, envelope, self.store, self.config)
            timing = groupcommit.take_timing()  # taken even when not logged: it is per message
            if timing is not None and log.isEnabledFor(logging.DEBUG):
                self._log_timing(envelope, eom, timing)
        except Exception as e:
            # Transient or not, the message is not recorded: the sender's MTA
            # must keep it and retry: nothing is accepted that is not recorded.
            log.error("%s: outcome=tempfail reason=\"%s: %s\"", envelope.queue_id or "NOQUEUE", type(e).__name__, e, exc_info=True)
            return self.tempfail()
        answer = ANSWERS[result.outcome]
        if answer.milter == "tempfail":
            return self.tempfail(result.reason or TEMPFAIL_TEXT, answer)
        if answer.milter == "reject":
            self.setreply(answer.smtp_code, answer.dsn, reply_text(result.reason or "message refused"))
            return Milter.REJECT
        if not self.system_rcpts:
            return Milter.ACCEPT  # a staff direct reply: recorded, sent on untouched
        return self.edit(result)

    def _log_timing(self, envelope: Envelope, eom: float, t: groupcommit.Timing) -> None:
        """Where a support message's time went (docs/postfix.md, "Where the time goes").

        data-eom: Postfix streaming it to us; prepare: parsing,
        authentication and read-ahead on this thread; queue: waiting for a
        writer; batch: how many messages share its transaction; before: the
        ones ahead of it in the batch; record: its own decision and inserts;
        commit: the rest of the batch and the commit (with its fsync)."""
        log.debug(
            "%s: timing ms data-eom=%.1f prepare=%.1f queue=%.1f batch=%d before=%.1f record=%.1f commit=%.1f hand-back=%.1f",
            envelope.queue_id or "NOQUEUE",
            1000 * (eom - self.started),
            1000 * (t.queued - eom),
            1000 * (t.started - t.queued),
            t.batch,
            1000 * t.before,
            1000 * (t.applied - t.started - t.before),
            1000 * (t.committed - t.applied),
            1000 * (time.monotonic() - t.committed),
        )

    def edit(self, result) -> int:
        """Tag and mark the support copy, or drop it (deliver = "discard")."""
        if self.config.milter.deliver == "discard" and result.outcome in (Outcome.CREATED, Outcome.UPDATED, Outcome.DUPLICATE):
            # Recorded: the support mailbox does not need its copy.  Ignored
            # mail (loops, bounces without a ticket) is kept: it is recorded
            # nowhere else.
            if len(self.system_rcpts) == len(self.recipients):
                return Milter.DISCARD
            for rcpt in self.system_rcpts:
                self.delrcpt(rcpt)
        if result.ticket is not None:
            new = subj.tagged(self.subject_raw, result.ticket, self.config.organization.tag)
            if new is not None:
                if self.subject_raw is None:
                    self.addheader("Subject", new)
                else:
                    self.chgheader("Subject", 1, new)
        # Headers of ours that came from outside could mislead mailbox rules:
        # remove them (last index first, indexes are 1-based per name).
        for name in (TICKET_HEADER, OUTCOME_HEADER):
            for idx in range(self.own_headers[name.lower()], 0, -1):
                self.chgheader(name, idx, "")
        if result.ticket is not None:
            self.addheader(TICKET_HEADER, str(result.ticket))
        self.addheader(OUTCOME_HEADER, result.outcome.value)
        self.edit_authentication_results(result)
        return Milter.ACCEPT

    def authserv_id(self) -> str:
        """The authserv-id we write: [trust] authserv_id, else our MTA's name."""
        return self.config.trust.authserv_id.strip() or self.mta_name or self.getsymval("j") or socket.getfqdn()

    def edit_authentication_results(self, result) -> None:
        """RFC 8601 section 5: remove headers that claim our authserv-id but
        did not come from the verifier we trust, then add our verdict.

        The trusted one (the topmost with [trust] authserv_id, see
        postdesk.auth.headers) stays, and then we add nothing: the verdict
        came from it.  Indexes are 1-based among Authentication-Results
        headers; the last goes first so earlier indexes stay valid.
        """
        own = self.authserv_id()
        trusted = arheaders.trusted_index(self.ar_values, self.config.trust.authserv_id.strip(), self.ar_below)
        forged = [i for i, v in enumerate(self.ar_values) if i != trusted and arheaders.claims(v, own)]
        for i in reversed(forged):
            self.chgheader(arheaders.HEADER, i + 1, "")
        if forged:
            log.info("%s: removed %d Authentication-Results header(s) claiming authserv-id %s", self.queue_id() or "NOQUEUE", len(forged), own)
        auth = getattr(result.decision, "auth", None) or UNCHECKED
        if trusted is not None and auth.source.startswith("authserv-id:"):
            return
        # RFC 8601 section 4: added at the top, like a trace header.
        self.addheader(arheaders.HEADER, arheaders.write(own, auth, self.sender, self.helo), 0)

    def abort(self):
        self._reset()
        return Milter.CONTINUE

    def close(self):
        self._reset()
        return Milter.CONTINUE


def make_factory(config: Config, store: MessageStore, ingest: Callable | None = None) -> Callable[[], PostdeskMilter]:
    """The per-connection factory for ``Milter.factory``; one store shared by all.

    ``store``: server.run passes a ``postdesk.store.groupcommit.GroupCommit``,
    and must: the database is then used only on its writer threads, never
    on libmilter's.  Debian's libmilter serves callbacks from a worker pool,
    so one connection's callbacks hop between OS threads, and pymilter 1.0.5
    creates one PyThreadState per connection on whichever thread comes first
    and deletes it on whichever thread runs close.  That leaves a dangling
    PyGILState entry behind on the first thread; C code that calls
    PyGILState_Ensure there (sqlite3's function destructor when
    SQLAlchemy's pool closes an overflow connection, for one) then crashes
    the process.  Seen here: a segfault in libpython after a few hundred
    support mails over 10 concurrent sessions.  Threads started by Python's
    threading module have proper thread states, so the store lives there.
    """
    return lambda: PostdeskMilter(config, store, ingest)
