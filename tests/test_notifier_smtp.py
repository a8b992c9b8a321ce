"""The notifier against a server that drops the connection mid-pass.

A raw-socket SMTP server that offers PIPELINING and CHUNKING (as Postfix
does), so the BDAT path runs, and that resets the connection (RST) once it
has queued and answered a number of mails and the client writes again.  Mails the server accepted must be
recorded as sent with its queue id, never retried; on the next pass every mail
reaches the server exactly once.  The one mail whose fate is unknown (queued,
but the connection died before its reply) is the documented duplicate window.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from test_store_support import T0, new, record

from postdesk.notifier.worker import Worker
from postdesk.store import Store
from postdesk.store.models import Outbox
from postdesk.testing.wait import free_port


class DroppingServer:
    """Queues mails like Postfix; on its first connection, after ``drop_after``
    mails it resets the connection: when the client next writes, after it
    read their replies (``reply_last``), or instead of the last reply (the
    mail queued, its reply never sent)."""

    def __init__(self, drop_after: int, reply_last: bool = True):
        self.drop_after, self.reply_last = drop_after, reply_last
        self.got: list[tuple[str, bytes, str]] = []  # (recipient, data, queue id)
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(conn, self.connections == 1), daemon=True).start()

    def _session(self, conn: socket.socket, dropping: bool) -> None:
        # Replies leave at once (as Postfix flushes them): none is still in our
        # send buffer, and so discarded, when the reset comes.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = conn.makefile("rb")
        accepted = 0
        rcpt = ""
        drop_on_next_command = False

        def say(text: str) -> None:
            conn.sendall(text.encode("ascii") + b"\r\n")

        try:
            say("220 test ESMTP")
            while True:
                line = f.readline()
                if not line:
                    return
                if drop_on_next_command:
                    # The client writes again only after reading every reply
                    # of the previous mail (one mail in flight), so the 250s
                    # have been read: a reset now cannot swallow one of them
                    # (Linux drops unread data when an RST arrives).
                    self._reset(conn)
                    return
                cmd = line.decode("ascii").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    say("250-test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME")
                elif verb in ("RSET", "NOOP"):
                    rcpt = ""
                    say("250 2.0.0 Ok")
                elif verb == "MAIL":
                    say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpt = re.search(r"<(.*)>", cmd).group(1)
                    say("250 2.1.5 Ok")
                elif verb == "BDAT":
                    data = f.read(int(cmd.split()[1]))
                    with self.lock:
                        qid = f"4Bx{len(self.got) + 1:06d}"
                        self.got.append((rcpt, data, qid))
                    accepted += 1
                    last = dropping and accepted == self.drop_after
                    if not last or self.reply_last:
                        say(f"250 2.0.0 Ok: queued as {qid}")
                    if last and self.reply_last:
                        drop_on_next_command = True
                    elif last:
                        # Queued, and the reply never leaves: the fate of
                        # this mail is unknown to the client.
                        self._reset(conn)
                        return
                elif verb == "QUIT":
                    say("221 2.0.0 Bye")
                    return
                else:
                    say("502 5.5.2 Error: command not recognized")
        except OSError:
            return
        finally:
            f.close()
            conn.close()

    @staticmethod
    def _reset(conn: socket.socket) -> None:
        """Close with an RST (SO_LINGER 0): what the client wrote after the
        last mail we answered is lost, as when a connection breaks."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def message_ids(self) -> list[str]:
        return [re.search(rb"^Message-ID: <([^>]+)>", d, re.M).group(1).decode() for _, d, _ in self.got]


def _outbox(store) -> list[Outbox]:
    with store.session(read_only=True) as s:
        return list(s.scalars(select(Outbox).order_by(Outbox.id)))


@pytest.mark.parametrize("drop_after", [3, 5, 7])
def test_mails_answered_before_a_reset_are_sent_not_retried(make_config, store_url, drop_after):
    server = DroppingServer(drop_after)
    cfg = make_config(store_url, notifier={"smtp": f"127.0.0.1:{server.port}", "ack_limit": 1000})
    store = Store.from_config(cfg)
    store.init(1000)
    try:
        for i in range(6):
            record(store, new(author=f"c{i}@customer.org", subject=f"T{i}"), cfg, now=T0)  # ack + alert each
        now = [T0]
        worker = Worker(cfg, store, lambda: now[0], batch=5)
        stats = worker.run_pass()
        # Every mail the server queued and answered is sent, with its queue id.
        assert len(server.got) == drop_after
        assert stats.sent == drop_after, stats
        sent = {o.message_id: o.queue_id for o in _outbox(store) if o.state == "sent"}
        assert sent == {m: q for m, (_, _, q) in zip(server.message_ids(), server.got)}
        assert all(o.state in ("sent", "queued") for o in _outbox(store))

        now[0] = T0 + timedelta(seconds=61)
        worker.run_pass()
        assert {o.state for o in _outbox(store)} == {"sent"}
        assert len(server.got) == 12  # each mail once: nothing delivered twice
        assert len(set(server.message_ids())) == 12
        assert sorted(r for r, _, _ in server.got) == sorted([f"c{i}@customer.org" for i in range(6)] + ["team@example.com"] * 6)
    finally:
        server.close()
        store.close()


def test_only_the_mail_whose_reply_was_lost_can_go_twice(make_config):
    """The documented duplicate window: the server queued the mail, the
    connection died before its reply.  That one mail is retried (it may be a
    duplicate); the ones answered before it are not."""
    server = DroppingServer(4, reply_last=False)
    cfg = make_config(notifier={"smtp": f"127.0.0.1:{server.port}", "ack_limit": 1000})
    store = Store.from_config(cfg)
    store.init(1000)
    try:
        for i in range(4):
            record(store, new(author=f"c{i}@customer.org", subject=f"T{i}"), cfg, now=T0)
        now = [T0]
        worker = Worker(cfg, store, lambda: now[0], batch=5)
        stats = worker.run_pass()
        assert stats.sent == 3 and len(server.got) == 4
        (unknown,) = [o for o in _outbox(store) if o.state == "queued" and o.attempts == 1 and "may have been queued" in o.last_error]
        now[0] = T0 + timedelta(seconds=61)
        worker.run_pass()
        assert {o.state for o in _outbox(store)} == {"sent"}
        assert len(server.got) == 9  # 8 mails, one of them twice
        tickets = [(r, re.search(rb"^X-Postdesk-Ticket: (\d+)", d, re.M).group(1)) for r, d, _ in server.got]
        assert len(set(tickets)) == 8
        assert tickets.count(tickets[3]) == 2  # the fourth, whose reply was lost
        assert unknown.recipient == tickets[3][0]
    finally:
        server.close()
        store.close()
