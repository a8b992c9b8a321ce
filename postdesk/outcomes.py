"""One table from an ingest outcome to the milter's reply, the LMTP reply and the pipe's exit.

The adapters (``postdesk.milter``, ``postdesk.lmtp`` and ``postdesk.pipe``)
look their answer up here, so SMTP-time and after-queue deployments cannot
disagree on what is retried and what is refused.

Exit codes are sysexits(3).  Postfix pipe(8) defers on 75 (EX_TEMPFAIL) and
bounces on the others; a plain 1 (an uncaught Python exception) would bounce,
so no outcome maps to it.  SMTP codes follow RFC 5321 and the enhanced status
codes RFC 3463.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class Outcome(enum.Enum):
    CREATED = "created"  # a new ticket
    UPDATED = "updated"  # an action on an existing ticket
    DUPLICATE = "duplicate"  # already recorded: nothing new
    IGNORED = "ignored"  # deliberately not recorded (loop, our own mail)
    REJECTED = "rejected"  # refused by an adapter before ingest (too big, empty), logged and counted by the importer
    DEFERRED = "deferred"  # not now by policy (a sender's new-ticket rate): try again later


@dataclass(frozen=True)
class Answer:
    milter: str  # "accept" | "tempfail" | "reject" (the milter maps to Milter.*)
    smtp_code: str  # RFC 5321 reply code, "" to let the MTA answer
    dsn: str  # RFC 3463 enhanced status code
    exit_code: int  # pipe(8) exit status

    @property
    def lmtp_code(self) -> str:
        """The reply code ``postdesk lmtp`` gives each recipient after DATA
        (RFC 2033 4.2): 250 for what the milter accepts (a milter leaves the
        2xx to the MTA; an LMTP server is the last hop and says it itself),
        the SMTP code otherwise.  A property, so every ``Answer(...)`` built
        elsewhere has one."""
        return "250" if self.milter == "accept" else self.smtp_code

    def lmtp_reply(self, text: str) -> str:
        """One LMTP reply line: code, enhanced status code, ``text`` made safe."""
        return f"{self.lmtp_code} {self.dsn} {reply_text(text)}"


ANSWERS: dict[Outcome, Answer] = {
    Outcome.CREATED: Answer("accept", "", "2.0.0", EX_OK),
    Outcome.UPDATED: Answer("accept", "", "2.0.0", EX_OK),
    Outcome.DUPLICATE: Answer("accept", "", "2.0.0", EX_OK),
    Outcome.IGNORED: Answer("accept", "", "2.0.0", EX_OK),
    # RFC 3463 X.6.0 "other or undefined media error".
    Outcome.REJECTED: Answer("reject", "554", "5.6.0", EX_DATAERR),
    # RFC 3463 X.7.1 "delivery not authorized": this sender may not open
    # more tickets now; 451 so the sender's MTA retries later (RFC 5321 4.2.1).
    Outcome.DEFERRED: Answer("tempfail", "451", "4.7.1", EX_TEMPFAIL),
}

# Recording failed (store locked past busy_timeout or unreachable, disk
# full, a bug): nothing is accepted that is not recorded, so the sender's MTA
# (451, RFC 5321 4.2.1) or our own Postfix (exit 75) keeps the message and
# retries.  RFC 3463 X.3.0 "other or undefined mail system status".
FAILURE = Answer("tempfail", "451", "4.3.0", EX_TEMPFAIL)

# A message over [limits] max_message_bytes: RFC 5321 552 "exceeded storage
# allocation", RFC 3463 X.3.4 "message too big for system".  Every adapter
# (milter, pipe(8), import) checks the size before ingest reads the message,
# and answers with this and ``too_big_reason``.
TOO_BIG = Answer("reject", "552", "5.3.4", EX_DATAERR)


# postdesk lmtp: a recipient that is not a system address was routed to us
# by mistake (a transport map that sends too much).  RFC 3463 X.3.5 "system
# incorrectly configured"; 451 so Postfix keeps the mail while the admin
# fixes the map instead of bouncing it.
MISROUTED = Answer("tempfail", "451", "4.3.5", EX_TEMPFAIL)

# postdesk lmtp stopping (SIGTERM): RFC 5321 421 "service not available,
# closing transmission channel", RFC 3463 X.3.2 "system not accepting network
# messages".  Postfix defers what was not yet answered and retries.
SHUTDOWN = Answer("tempfail", "421", "4.3.2", EX_TEMPFAIL)


# The reply text of FAILURE, from every adapter that speaks SMTP or LMTP.
TEMPFAIL_TEXT = "postdesk cannot record this message now, try again later"


def reply_text(text: str) -> str:
    """A safe SMTP reply text: one line, printable ASCII, no '%' (libmilter
    formats it), at most 400 characters."""
    text = "".join(c if " " <= c <= "~" else " " for c in text).replace("%", " percent")
    return " ".join(text.split())[:400] or "-"


def too_big_reason(limit: int, size: int | None = None) -> str:
    """Why TOO_BIG, in the same words from every adapter (``size`` None: the
    pipe stops reading one byte past the limit and knows no more)."""
    got = "" if size is None else f"{size} bytes, "
    return f"message too big: {got}more than the limit of {limit} bytes ([limits] max_message_bytes)"


def answer(outcome: Outcome) -> Answer:
    return ANSWERS[outcome]


@dataclass(frozen=True)
class Result:
    """What happened to one message: returned by ``Store.record`` and
    ``postdesk.ingest.ingest``, logged by ``postdesk.ingest.log_result``."""

    outcome: Outcome
    ticket: int | None = None
    action_id: int | None = None
    decision: Any = None  # postdesk.filter.decision.Decision, when the filter ran
    reason: str = ""
    # What the message changed on its ticket, for the log line: "status",
    # "owner", "department", "merged_into", ... -> the new value.
    changes: dict[str, str] = field(default_factory=dict)
