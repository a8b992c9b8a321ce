"""The filter's rules, one module each, run in the order of ``RULES``.

Like a Mailman chain: ``decide()`` runs each rule's ``apply(draft)`` in
turn; a rule returns a final ``Decision`` to stop the chain (the message is
ignored, a duplicate, or deferred) or None after changing the draft.  The
order is part of the behaviour (docs/filter.md lists the same order, with
the reason for each rule), and each module is tested alone.
"""

from __future__ import annotations

from collections.abc import Callable

from postdesk.filter.decision import Decision
from postdesk.filter.draft import Draft
from postdesk.filter.rules import (
    ack,
    automatic,
    bounce,
    commands,
    content,
    duplicate,
    forwarded,
    identity,
    language,
    loop,
    new_tickets,
    recipients,
    reopen,
    stranger,
    take,
    team_alert,
    thread,
    trust,
)

Rule = Callable[[Draft], "Decision | None"]

# The declared order (docs/filter.md).
RULES: tuple[tuple[str, Rule], ...] = (
    ("loop", loop.apply),  # our own mail coming back: ignore
    ("recipients", recipients.apply),  # not to a system address: ignore, or staff's direct mail
    ("duplicate", duplicate.apply),  # recorded before: record nothing
    ("thread", thread.apply),  # which ticket
    ("bounce", bounce.apply),  # delivery and feedback reports
    ("automatic", automatic.apply),  # auto-replies, list and bulk mail
    ("trust", trust.apply),  # staff, proven
    ("identity", identity.apply),  # forged or unverified authors
    ("new_tickets", new_tickets.apply),  # a sender's new-ticket rate: defer
    ("content", content.apply),  # body, new text, attachments
    ("language", language.apply),  # a new ticket's language (Content-Language, else the words)
    ("commands", commands.apply),  # staff's commands (docs/commands.md)
    ("forwarded", forwarded.apply),  # [fwd]: the forwarded customer's ticket
    ("reopen", reopen.apply),  # a customer's reply to a pending or closed ticket
    ("take", take.apply),  # the first public staff reply takes an unowned ticket
    ("stranger", stranger.apply),  # newcomers on a ticket stay private
    ("team_alert", team_alert.apply),  # who alerts the team
    ("ack", ack.apply),  # whether and where to acknowledge
)

__all__ = ["RULES", "Rule"]
