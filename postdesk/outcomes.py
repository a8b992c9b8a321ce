"""One table from an ingest outcome to the milter's reply and the pipe's exit.

Both adapters (``postdesk.milter`` and ``postdesk.pipe``) look their
answer up here, so SMTP-time and after-queue deployments cannot disagree on
what is retried and what is refused.

Exit codes are sysexits(3).  Postfix pipe(8) defers on 75 (EX_TEMPFAIL) and
bounces on the others; a plain 1 (an uncaught Python exception) would bounce,
so no outcome maps to it.  SMTP codes follow RFC 5321 and the enhanced status
codes RFC 3463.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
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
    REJECTED = "rejected"  # permanent refusal (too big, unreadable)
    TEMPFAIL = "tempfail"  # could not record now: try again later
    DEFERRED = "deferred"  # not now by policy (a sender's new-ticket rate): try again later


@dataclass(frozen=True)
class Answer:
    milter: str  # "accept" | "tempfail" | "reject" (the milter maps to Milter.*)
    smtp_code: str  # RFC 5321 reply code, "" to let the MTA answer
    dsn: str  # RFC 3463 enhanced status code
    exit_code: int  # pipe(8) exit status


ANSWERS: dict[Outcome, Answer] = {
    Outcome.CREATED: Answer("accept", "", "2.0.0", EX_OK),
    Outcome.UPDATED: Answer("accept", "", "2.0.0", EX_OK),
    Outcome.DUPLICATE: Answer("accept", "", "2.0.0", EX_OK),
    Outcome.IGNORED: Answer("accept", "", "2.0.0", EX_OK),
    Outcome.REJECTED: Answer("reject", "554", "5.6.0", EX_DATAERR),
    Outcome.TEMPFAIL: Answer("tempfail", "451", "4.3.0", EX_TEMPFAIL),
    # RFC 3463 X.7.1 "delivery not authorized": this sender may not open
    # more tickets now; 451 so the sender's MTA retries later (RFC 5321 4.2.1).
    Outcome.DEFERRED: Answer("tempfail", "451", "4.7.1", EX_TEMPFAIL),
}

# A message over [limits] max_message_bytes: RFC 5321 552, RFC 3463 5.3.4.
TOO_BIG = Answer("reject", "552", "5.3.4", EX_DATAERR)


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
