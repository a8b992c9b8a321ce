"""Who gets mail from the desk, how often, and what an update holds.

Every rule about *whether* a claimed outbox row becomes a mail lives here;
the store (``postdesk.store.outbox``) only loads the rows
(``postdesk.outbox_rows.Claimed``) and saves what this module decides:

- ``Job``: send it.
- ``Skip``: suppress it, with the reason (and, for an update whose news the
  recipient already has, advance their mark).
- ``Defer``: a rate limit holds it; queued again until the window allows.

Acknowledgements (RFC 3834 section 2: "automatic responses SHOULD NOT be
issued" to automatic mail, and never to the null sender):

- never to the null sender, MAILER-DAEMON or postmaster, nor our own addresses;
- never for mail the filter flagged as automatic, list, bulk, bounce or loop;
- at most ``ack_limit`` per sender per ``ack_window``, where plus-address
  variants (``jane+x@example.org``) are one sender: a forged-sender burst
  cannot multiply its acknowledgements by varying the tag;
- at most ``ack_global_limit`` to all senders together per ``ack_window``,
  so a burst of forged senders cannot make us a backscatter source.

Team alerts (and bounce alerts) go to whoever the store queued them for
(the ticket's department's team, or its owner); never to a system address.
A pending ticket's reminder goes only while the ticket is still pending.

Customer updates ("what an update holds"):

- only for tickets visible to customers, only to customers on the ticket;
- the public messages and status changes after the recipient's mark, and
  ones made public later below it (``late``); of each only its new text;
- never the recipient's own words, nor a message they got directly;
- at most ``update_limit`` per ticket and recipient per ``update_window``;
  past that the update is deferred (nothing is lost: it then carries
  everything since);

Auto-responders that set no RFC 3834 header are recognised by the filter
(``postdesk.filter.rules.automatic``: answering our mail within seconds,
twice in a row): their messages are private, so no update carries them and
two such customers on one ticket do not mail each other through the desk.

Pure: no database, no clock (``now`` is passed in).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from postdesk.config import Config
from postdesk.notifier import refusal
from postdesk.outbox_rows import AckHistory, ActionRow, Claimed, Defer, Entry, Job, Skip, customers, is_customer

# Flags of actions that must never get an auto-reply (RFC 3834 section 2).
NO_ACK_FLAGS = frozenset({"auto", "list", "bulk", "bounce", "loop"})
# Local parts that are the mail system itself (RFC 5321 section 4.5.5, RFC 3834 section 2).
SYSTEM_LOCALS = ("mailer-daemon", "postmaster")

log = logging.getLogger("postdesk.notifier")

Decision = Job | Skip | Defer
# Larger HTML goes as text only: cutting its quotes costs about 2 s a MB
# (the standard library's parser), on every mail that carries it.
MAX_HTML = 1_000_000


def sender_key(address: str) -> str:
    """One sender however the plus-address tag varies: ``jane+x@example.org``
    and ``Jane@Example.org`` are both ``jane@example.org`` (RFC 5233 subaddressing)."""
    local, at, domain = (address or "").strip().lower().rpartition("@")
    if not at:
        return domain
    return f"{local.split('+', 1)[0] or local}@{domain}"


def entry(action: ActionRow, customer: bool = False, *, ticket: int | None = None) -> Entry:
    """An action as a mail shows it: its new text (quotes stripped).

    Never the whole text in customer mail: it holds the quoted history,
    which may quote a private team alert or another customer's words.  An
    update carries only public actions, so their attachments are public.  An
    entry without text is worded by the templates ("(no text)").  A team
    alert shows staff the whole text when the filter found nothing new.
    The HTML, when the message had some, has its quoted history cut the
    same way (``postdesk.notifier.html.new_html``); should that fail on
    some sender's HTML, the entry goes as text only (a warning is logged):
    an exception here would fail the whole claimed batch, again on every
    retry, and hold up everyone else's mail.
    """
    if action.new_text.strip():
        text = action.new_text
    elif customer:
        text = ""
    else:
        text = action.text
    return Entry(
        id=action.id,
        kind=action.kind,
        public=action.public,
        author=action.author,
        text=text,
        created_at=action.created_at,
        flags=action.flags,
        attachments=action.attachments,
        html=_html(action, ticket),
    )


def _html(action: ActionRow, ticket: int | None) -> str:
    """The new part of ``action``'s HTML, "" for text only."""
    from postdesk.notifier.html import new_html

    if not action.html or action.kind != "message" or len(action.html) > MAX_HTML:
        return ""
    try:
        return new_html(action.html)
    except Exception as e:  # any sender's HTML: one row must never fail the batch
        log.warning('html dropped: ticket=%s action=%d reason="%s: %.200s" (sent as text only)', ticket if ticket is not None else "-", action.id, type(e).__name__, e)
        return ""


def decide(batch: Sequence[Claimed | None], acks: AckHistory, config: Config, now: datetime) -> list[Decision | None]:
    """A decision per claimed row (None stays None: the row is no longer ours).

    Acknowledgements are counted in row order, so within a batch the older
    row wins, as it does against other workers' claims.
    """
    counter = _AckCounter(acks)
    out: list[Decision | None] = []
    for c in batch:
        if c is None:
            out.append(None)
        elif c.kind == "ack":
            out.append(ack(c, counter, config))
        elif c.kind in ("alert", "bounce-alert"):
            out.append(alert(c, config))
        elif c.kind == "update":
            out.append(update(c, config, now))
        elif c.kind == "reminder":
            out.append(reminder(c, config))
        elif c.kind == "refusal":
            out.append(refusal.decide(c, config))
        else:
            out.append(_skip(c, f"unknown kind {c.kind!r}"))
    return out


# --- acknowledgements ---------------------------------------------------------


class _AckCounter:
    """Acknowledgements that count against the limits, by sender and in all."""

    def __init__(self, history: AckHistory):
        self.by_sender: dict[str, int] = {}
        for address, n in history.sent.items():
            key = sender_key(address)
            self.by_sender[key] = self.by_sender.get(key, 0) + n
        self.total = sum(history.sent.values())
        self.in_flight = history.in_flight

    def before(self, row_id: int, key: str) -> tuple[int, int]:
        """(to this sender, to all) sent, approved, or claimed by another worker under a lower row id."""
        earlier = [sender_key(r) for i, r in self.in_flight if i < row_id]
        return self.by_sender.get(key, 0) + earlier.count(key), self.total + len(earlier)

    def approve(self, key: str) -> None:
        self.by_sender[key] = self.by_sender.get(key, 0) + 1
        self.total += 1


def ack(c: Claimed, counter: _AckCounter, config: Config) -> Decision:
    to = c.recipient.address
    local = to.partition("@")[0]
    if not to or to == "<>" or local in SYSTEM_LOCALS:
        return _skip(c, "null sender")
    if config.is_own_address(to):
        return _skip(c, "own address")
    if c.action is None:
        return _skip(c, "action missing")
    flags = c.action.flags & NO_ACK_FLAGS
    if flags:
        return _skip(c, "auto-submitted (" + ",".join(sorted(flags)) + ")")
    limit, limit_all = int(config.notifier.ack_limit), int(config.notifier.ack_global_limit)
    window = int(config.notifier.ack_window)
    if limit == 0 or limit_all == 0:
        return _skip(c, "acknowledgements off (ack_limit = 0)" if limit == 0 else "acknowledgements off (ack_global_limit = 0)")
    key = sender_key(to)
    mine, everyone = counter.before(c.row_id, key)
    if mine >= limit:
        return _skip(c, f"rate limit ({mine} acknowledgements to this sender in {window} s)")
    if everyone >= limit_all:
        return _skip(c, f"global rate limit ({everyone} acknowledgements in {window} s)")
    counter.approve(key)
    return _job(c, [entry(c.action, customer=True, ticket=c.ticket)], in_reply_to=c.action.message_id, up_to_action_id=c.action.id)


# --- team alerts --------------------------------------------------------------


def alert(c: Claimed, config: Config) -> Decision:
    to = c.recipient.address
    if not to or config.is_system_address(to):
        return _skip(c, "own address")  # a system address would turn the alert into a ticket
    if c.action is None:
        return _skip(c, "action missing")
    return _job(
        c,
        [entry(c.action, ticket=c.ticket)],
        in_reply_to=c.action.message_id,
        up_to_action_id=c.action.id,
        new_ticket=(c.action.id == c.first_action_id),
    )


# --- pending reminders --------------------------------------------------------


def reminder(c: Claimed, config: Config) -> Decision:
    """The one reminder of a pending ticket (``postdesk.store.lifecycle``
    queued it): only while the ticket still waits for the customer, and
    only for a ticket visible to customers."""
    to = c.recipient.address
    if c.status != "pending":
        return _skip(c, f"ticket no longer pending ({c.status})")
    if not c.visible:
        return _skip(c, "ticket not visible to customers")
    if not to or config.is_own_address(to) or to.partition("@")[0] in SYSTEM_LOCALS:
        return _skip(c, "own address")
    # RFC 3834 section 3.1.5: an automatic message refers to the one it is
    # about; here the customer's last message on the ticket, so their client
    # threads the reminder with the conversation.
    return _job(c, [], in_reply_to=c.participant.last_message_id if c.participant else "")


# --- customer updates ---------------------------------------------------------


def update(c: Claimed, config: Config, now: datetime) -> Decision:
    to = c.recipient.address
    if not c.visible:
        # Not advancing the mark: if the ticket is made visible later, the
        # customer hears about everything since their last update.
        return _skip(c, "ticket not visible to customers")
    if not to or config.is_own_address(to):
        return _skip(c, "own address")
    p = c.participant
    if p is None:
        return _skip(c, "not a participant")
    if not is_customer(to, p.role, p.staff or c.recipient.staff, config):
        return _skip(c, "staff participant")
    since = p.last_update_action_id
    fresh = [a for a in c.candidates if a.id > since or late(c, since, a)]
    up_to = max([since] + [a.id for a in fresh])
    entries = [
        entry(a, customer=True, ticket=c.ticket)
        for a in fresh
        if not (a.author is not None and a.author.address == to)  # never their own words back to them
        and to not in a.delivered_to  # they got this message directly (To/Cc)
        and not (a.kind == "status" and not config.organization.status_change_emails)
    ]
    if not entries:
        # What is new is theirs or already theirs: mark it told.
        return _skip(c, "nothing new for this recipient", advance=True, up_to=up_to, since=since)
    limit, window = int(config.notifier.update_limit), float(config.notifier.update_window)
    if len(c.sent_in_window) >= limit:
        until = min(c.sent_in_window) + timedelta(seconds=window)
        return Defer(
            c.row_id,
            c.token,
            c.kind,
            c.ticket,
            to,
            f"rate limit ({len(c.sent_in_window)} updates to this recipient on this ticket in {int(window)} s)",
            max(until, now),
        )
    return _job(c, entries, in_reply_to=p.last_message_id, up_to_action_id=up_to, since_action_id=since)


def late(c: Claimed, since: int, a: ActionRow) -> bool:
    """A message below the recipient's mark that was never carried to them:
    made public (``action toggle``) after the mark passed it while private.

    The mark's first value (when they joined, or their first update) bounds
    the search, so a participant who joined later does not get the history;
    the ``action_ids`` of their settled updates say what they already have.
    """
    if not c.past or a.kind != "message":
        return False
    floor = min(p.since_action_id for p in c.past)
    return floor < a.id <= since and not any(a.id in p.action_ids for p in c.past)


# --- results ------------------------------------------------------------------


def _skip(c: Claimed, reason: str, *, advance: bool = False, up_to: int = 0, since: int = 0, ids: tuple[int, ...] = ()) -> Skip:
    return Skip(
        row_id=c.row_id,
        token=c.token,
        kind=c.kind,
        ticket=c.ticket,
        recipient=c.recipient.address,
        reason=reason,
        advance=advance,
        up_to_action_id=up_to,
        since_action_id=since,
        action_ids=ids,
    )


def _job(c: Claimed, entries: list[Entry], *, in_reply_to: str = "", **kw) -> Job:
    return Job(
        row_id=c.row_id,
        token=c.token,
        kind=c.kind,
        ticket=c.ticket,
        subject=c.subject,
        status=c.status,
        recipient=c.recipient,
        entries=tuple(entries),
        created_at=c.created_at,
        department=c.department,
        in_reply_to=in_reply_to or "",
        language=c.language,
        **kw,
    )


__all__ = ["NO_ACK_FLAGS", "ack", "alert", "customers", "decide", "entry", "is_customer", "late", "reminder", "sender_key", "update"]
