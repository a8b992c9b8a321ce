"""``make demo``: the whole postdesk flow through a real, private Postfix.

Starts an SMTP sink that keeps every mail Postfix relays as a file
(``demo-run/sink/NNNN.eml`` in this checkout); a private Postfix instance on
a loopback high port with the postdesk milter attached; the milter; and the
notifier with a five-second quiet period.  The demo's own files (config,
database, attachments, sink, logs) are under ``demo-run/``; what Postfix
(user postfix) must reach, its instance and the milter socket, is in fresh
0755 directories under /tmp, so the demo runs from a checkout anywhere, a
0700 parent included (``demo-run/postfix`` links to the instance while it
runs; its log is copied to ``demo-run/postfix.log``).  Then it plays a
conversation (a customer writes; staff reply twice quickly, once with an
attachment; a private note; the customer answers; staff close the ticket;
a duplicate ticket merged by ``[merge #N]``; a customer's mail forwarded by
staff with ``[fwd]``; a second department: a customer writes to billing@,
gets Billing's acknowledgement, Billing's team is alerted, a staff reply
takes the ticket, staff set it pending, and with the demo's short timers the
customer gets one reminder and the ticket is closed automatically), prints
what each party received, the tickets, and the log lines, and stops
everything it started.  It never touches the system Postfix or port 25.

A DNS server on loopback publishes SPF and DMARC for the customer's domain
(the milter asks it, never the machine's resolver), so the demo also shows
sender authentication: the real customer is acknowledged, and a forger
writing as her from another domain is recorded privately, flagged
``forged``, and answered by nothing.

Needs root (Postfix's master runs as root), the Debian postfix package and
aiosmtpd (the ``test`` extra); ``make demo`` installs what is missing.  A
failure ends with one line saying what went wrong and what to do.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import sys
import textwrap
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from postdesk.testing.dns import DNSServer  # noqa: E402
from postdesk.testing.postfix import PrivatePostfix, available, shared_tmpdir  # noqa: E402
from postdesk.testing.toml import toml_dumps  # noqa: E402
from postdesk.testing.wait import free_port, unix_socket_open, wait_for  # noqa: E402

try:
    from postdesk.testing.smtp import Sink  # noqa: E402
except ImportError as e:  # aiosmtpd missing: say what to do, no traceback
    print(f"make demo: {e} (`make demo` installs it into .venv)", file=sys.stderr)
    sys.exit(69)

RUN = REPO / "demo-run"
CUSTOMER = "alice@customer.example"
FORGER = "mallory@forger.example"  # writes as the customer, from another domain
STAFF = "bob@example.com"
DAVE = "dave@customer.example"  # writes twice about one problem (the merge scene)
CAROL = "carol@customer.example"  # wrote to Bob directly (the forward scene)
TEAM = "team@example.com"
SUPPORT = "support@example.com"
QUIET = 5  # seconds; 120 in production
BILLING = "billing@example.com"  # the second department's address
BILLING_TEAM = "billing-team@example.com"
BILLING_CUSTOMER = "dan@customer.example"
ERIN = "erin@example.com"  # Billing staff
REMIND, CLOSE = 12, 24  # seconds after the last public staff reply; days in production


class DemoError(Exception):
    """A failure the demo explains in one line (what happened, what to do)."""


def step(text: str) -> None:
    print(f"\n== {text}")


class Demo:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.sink: Sink | None = None
        self.dns: DNSServer | None = None
        self.postfix: PrivatePostfix | None = None
        self.config = RUN / "postdesk.toml"
        # Postfix's smtpd (user postfix) connects to the milter socket: it
        # must not sit in the checkout, whose parents may be 0700.
        self.sockdir: Path | None = None
        self.socket: Path | None = None

    # -- plumbing ---------------------------------------------------------------

    def postdesk(self, *args: str, check: bool = True) -> str:
        cmd = [sys.executable, "-m", "postdesk", "--config", str(self.config), *args]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if check and p.returncode != 0:
            last = (p.stderr.strip().splitlines() or ["no message"])[-1]
            raise DemoError(f"`postdesk {' '.join(args)}` exited {p.returncode}: {last}")
        return p.stdout

    def spawn(self, name: str, *args: str) -> None:
        log = open(RUN / f"{name}.log", "wb")
        cmd = [sys.executable, "-m", "postdesk", "--config", str(self.config), *args]
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))

    def send(self, msg: EmailMessage, envelope_sender: str | None = None) -> None:
        if "Message-ID" not in msg:
            msg["Message-ID"] = make_msgid(domain=msg["From"].split("@")[-1].rstrip(">"))
        with smtplib.SMTP("127.0.0.1", self.postfix.port, timeout=30) as smtp:
            smtp.send_message(msg, from_addr=envelope_sender)
        via = f" (MAIL FROM:<{envelope_sender}>)" if envelope_sender else ""
        print(f"   sent: {msg['From']} -> {msg['To']}: {msg['Subject']}{via}")

    def mails_to(self, address: str) -> list:
        return [m for m in self.sink.messages if address in m.recipients]

    def wait_mails(self, address: str, count: int, what: str, timeout: float = 60) -> list:
        return wait_for(lambda: len(self.mails_to(address)) >= count and self.mails_to(address), timeout, what)

    # -- setup and teardown -----------------------------------------------------

    def start(self) -> None:
        ok, why = available()
        if not ok:
            raise DemoError(why)
        if RUN.exists():
            shutil.rmtree(RUN)
        RUN.mkdir()
        self.sockdir = shared_tmpdir("postdesk-demo-")
        self.socket = self.sockdir / "milter.sock"
        self.sink = Sink(directory=RUN / "sink").start()
        # The customer's domain: mail from this host (127.0.0.1) passes SPF,
        # and DMARC asks receivers to reject what is not aligned.
        self.dns = DNSServer(
            {
                "customer.example": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
                "_dmarc.customer.example": {"TXT": ["v=DMARC1; p=reject"]},
            }
        ).start()
        port = free_port()
        self.config.write_text(
            toml_dumps(
                {
                    "organization": {
                        "name": "Example Inc Support",
                        "system_addresses": [SUPPORT],
                        "reply_to": SUPPORT,
                        "team": [TEAM],
                        "staff": ["@example.com"],
                    },
                    "store": {"url": f"sqlite:///{RUN}/postdesk.db", "attachments": str(RUN / "attachments")},
                    "milter": {"socket": f"unix:{self.socket}", "socket_mode": "0666"},
                    "notifier": {"smtp": f"127.0.0.1:{port}", "quiet_period": QUIET, "tick": 1},
                    "lifecycle": {"pending_reminder": REMIND, "pending_close": CLOSE},
                    "departments": [
                        {
                            "name": "Billing",
                            "display_name": "Example Inc Billing",
                            "addresses": [BILLING],
                            "team": [BILLING_TEAM],
                            "reply_to": BILLING,
                        }
                    ],
                    # Nothing is trusted by default: staff send from loopback here.
                    "trust": {"trusted_networks": ["127.0.0.0/8"]},
                    "dns": {"nameservers": [self.dns.address], "timeout": 2},
                }
            )
        )
        self.postdesk("init")
        self.spawn("milter", "milter")
        milter = self.procs[-1]
        wait_for(lambda: unix_socket_open(str(self.socket)) or milter.poll() is not None, 15, "the milter socket")
        if milter.poll() is not None:
            last = ((RUN / "milter.log").read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise DemoError(f"the milter exited {milter.returncode}: {last}")
        self.postfix = PrivatePostfix(RUN, port, self.sink.port, milter_socket=f"unix:{self.socket}")
        self.postfix.start()
        self.spawn("notifier", "notifier")
        print(f"private Postfix on 127.0.0.1:{port}, sink on 127.0.0.1:{self.sink.port}, files in {RUN}")

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.postfix:
            self.postfix.stop()
        if self.sink:
            self.sink.stop()
        if self.dns:
            self.dns.stop()
        if self.sockdir:
            shutil.rmtree(self.sockdir, ignore_errors=True)

    # -- the conversation ---------------------------------------------------------

    def play(self) -> None:
        step("1. A customer writes to support")
        first = EmailMessage()
        first["From"] = f"Alice Customer <{CUSTOMER}>"
        first["To"] = SUPPORT
        first["Subject"] = "Printer broken"
        first.set_content("Hello,\n\nthe printer on floor 3 prints blank pages since this morning.\n\nAlice\n")
        self.send(first)

        ack = self.wait_mails(CUSTOMER, 1, "the acknowledgement")[0].message
        subject = str(ack["Subject"])
        number = subject.split("[#", 1)[1].split("]", 1)[0]
        alert = self.wait_mails(TEAM, 1, "the team alert")[0].message
        print(f"   the customer got: {subject!r}; the team got: {str(alert['Subject'])!r}")
        print("   (SPF passed for customer.example and aligns with From:, so DMARC passed: she is acknowledged)")

        step("1b. A forger writes as the customer, from another domain, and asks to be copied")
        forged = EmailMessage()
        forged["From"] = f"Alice Customer <{CUSTOMER}>"
        forged["To"] = SUPPORT
        forged["Cc"] = FORGER
        forged["Subject"] = f"Re: [#{number}] Printer broken"
        forged.set_content("Please send the replacement to my new address and copy my assistant.\n")
        self.send(forged, envelope_sender=FORGER)
        # Recorded at SMTP time: Postfix's 250 came after the milter's commit.
        actions = json.loads(self.postdesk("ticket", "show", number, "--json"))["actions"]
        last = actions[-1]
        print(f"   recorded privately: public={last['public']} flags={last['flags']} auth={last.get('auth')}")
        print("   (DMARC failed for customer.example: nothing is mailed because of it, the Cc joins nobody)")

        step("2. Staff reply twice, quickly, from an ordinary mail client (once with an attachment)")
        for i, text in enumerate(["We are on it: a technician is on the way.", "Here is the driver you will need."]):
            reply = EmailMessage()
            reply["From"] = f"Bob Staff <{STAFF}>"
            reply["To"] = SUPPORT
            reply["Subject"] = f"Re: [#{number}] Printer broken"
            reply["In-Reply-To"] = alert["Message-ID"]
            reply.set_content(f"{text}\n\nBob\n\n> {CUSTOMER} wrote:\n> the printer prints blank pages\n")
            if i == 1:
                reply.add_attachment(b"%PDF-1.4 demo driver\n", maintype="application", subtype="pdf", filename="driver.pdf")
            self.send(reply)
        print(f"   waiting for {QUIET} quiet seconds: the customer gets ONE update carrying both replies")
        update = self.wait_mails(CUSTOMER, 2, "the batched customer update")[1].message
        names = [p.get_filename() for p in update.iter_attachments()]
        print(f"   the customer got: {str(update['Subject'])!r} with attachments {names}")

        step("3. A private note ([pvt]): no customer mail")
        note = EmailMessage()
        note["From"] = f"Bob Staff <{STAFF}>"
        note["To"] = SUPPORT
        note["Subject"] = f"Re: [#{number}] Printer broken [pvt]"
        note.set_content("Toner cartridge was empty; ordered two spares.\n")
        self.send(note)

        step("4. The customer answers the update (the tag is deleted: In-Reply-To still threads it)")
        answer = EmailMessage()
        answer["From"] = f"Alice Customer <{CUSTOMER}>"
        answer["To"] = SUPPORT
        answer["Subject"] = "Re: Printer broken"
        answer["In-Reply-To"] = update["Message-ID"]
        answer["References"] = update["Message-ID"]
        answer.set_content("Thanks, it works again!\n\n> We are on it\n")
        self.send(answer)
        # Bob's first public reply took the ticket: its alerts now go to him, the owner.
        self.wait_mails(STAFF, 1, "the owner's alert for the customer's answer")
        print(f"   the alert went to the ticket's owner {STAFF} (his first reply took the ticket), not to the team")

        step("5. Staff close the ticket ([closed])")
        close = EmailMessage()
        close["From"] = f"Bob Staff <{STAFF}>"
        close["To"] = SUPPORT
        close["Subject"] = f"Re: [#{number}] Printer broken [closed]"
        close.set_content("Glad to hear it. Closing this ticket.\n")
        self.send(close)
        self.wait_mails(CUSTOMER, 3, "the closing update")
        # Count only once nothing is left to send: no notification queued in
        # the outbox (an extra update would be queued by now: the milter
        # schedules it in the transaction that records the mail) and nothing
        # in Postfix's queue (the sink records a mail before its 250).
        wait_for(self.settled, QUIET * 3 + 30, "the outbox and Postfix's queue to empty")

        self.scene_merge()
        self.scene_forward()
        wait_for(self.settled, QUIET * 3 + 30, "the outbox and Postfix's queue to empty")
        billing = self.scene_billing_department()
        self.scene_pending_reminder_and_close(billing)
        wait_for(self.settled, QUIET * 3 + 30, "the outbox and Postfix's queue to empty")
        self.report(number)
        self.report_ticket(billing)

    # -- a second department; a pending ticket reminded and closed ------------------

    def scene_billing_department(self) -> str:
        """A customer writes to billing@: Billing's ticket, acknowledged as
        Billing, alerting Billing's team; a staff reply takes it."""
        step("8. A second department: a customer writes to billing@")
        first = EmailMessage()
        first["From"] = f"Dan Customer <{BILLING_CUSTOMER}>"
        first["To"] = BILLING
        first["Subject"] = "Invoice 2026-114 charged twice"
        first.set_content("Hello,\n\nmy card was charged twice for invoice 2026-114.\n\nDan\n")
        self.send(first)
        ack = self.wait_mails(BILLING_CUSTOMER, 1, "Billing's acknowledgement")[0].message
        number = str(ack["Subject"]).split("[#", 1)[1].split("]", 1)[0]
        alert = self.wait_mails(BILLING_TEAM, 1, "Billing's team alert")[0].message
        print(f"   the customer got {str(ack['Subject'])!r} from {ack['From']}")
        print(f"   Billing's team got {str(alert['Subject'])!r} (the support team got nothing)")
        listed = json.loads(self.postdesk("ticket", "list", "--department", "Billing", "--json"))
        print(f"   ticket list --department Billing: {[t['number'] for t in listed]}")

        step("9. Billing staff answer with [pending]: the first public staff reply takes the ticket, and it waits for the customer")
        reply = EmailMessage()
        reply["From"] = f"Erin Billing <{ERIN}>"
        reply["To"] = BILLING
        reply["Subject"] = f"Re: [#{number}] Invoice 2026-114 charged twice [pending]"
        reply["In-Reply-To"] = alert["Message-ID"]
        reply.set_content("We refunded the second charge. Can you see it on your statement?\n\nErin\n")
        self.send(reply)
        shown = wait_for(lambda: (t := json.loads(self.postdesk("ticket", "show", number, "--json")))["owner"] and t, 30, "the owner")
        print(f"   #{number}: owner {shown['owner']}, status {shown['status']}")
        return number

    def scene_pending_reminder_and_close(self, number: str) -> None:
        """The ticket waits for the customer: one reminder after REMIND
        seconds, closed after CLOSE seconds, both from the staff reply."""
        step(f"10. No answer: {REMIND} s after the staff reply one reminder, after {CLOSE} s the ticket is closed")
        reminder = wait_for(
            lambda: [m for m in self.mails_to(BILLING_CUSTOMER) if "waiting for your answer" in self._text(m)], CLOSE + 30, "the reminder"
        )[0]
        print(f"   the customer got ONE reminder: {str(reminder.message['Subject'])!r}")
        closed = wait_for(
            lambda: [m for m in self.mails_to(BILLING_CUSTOMER) if "Closed automatically" in self._text(m)],
            CLOSE + QUIET + 30,
            "the closing update",
        )[0]
        status = json.loads(self.postdesk("ticket", "show", number, "--json"))["status"]
        print(f"   no answer: #{number} is {status}; the customer was told: {str(closed.message['Subject'])!r}")
        reminders = [m for m in self.mails_to(BILLING_CUSTOMER) if "waiting for your answer" in self._text(m)]
        print(f"   reminders sent in all: {len(reminders)}")

    @staticmethod
    def _text(m) -> str:
        body = m.message.get_body(("plain",))
        return body.get_content() if body else ""

    def report_ticket(self, number: str) -> None:
        step(f"Ticket {number} (Billing)")
        print(self.postdesk("ticket", "show", number))

    # -- more scenes: each its own function ------------------------------------------

    def staff_mail(self, subject: str, text: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = f"Bob Staff <{STAFF}>"
        msg["To"] = SUPPORT
        msg["Subject"] = subject
        msg.set_content(text)
        return msg

    def scene_merge(self) -> None:
        """A customer opens two tickets about one problem; staff merge them by mail."""
        step("6. Merge: a customer writes twice about one problem; staff answer [merge #N] on the duplicate")
        numbers = []
        for i, text in enumerate(["The scanner jams.", "Sorry, again: the scanner on floor 2 jams on every page."]):
            msg = EmailMessage()
            msg["From"] = f"Dave Customer <{DAVE}>"
            msg["To"] = SUPPORT
            msg["Subject"] = "Scanner jams" if i == 0 else "Scanner STILL jams"
            msg.set_content(text + "\n")
            self.send(msg)
            ack = self.wait_mails(DAVE, i + 1, "the acknowledgement")[i].message
            numbers.append(str(ack["Subject"]).split("[#", 1)[1].split("]", 1)[0])
        dup, real = numbers[1], numbers[0]
        self.send(self.staff_mail(f"Re: [#{dup}] Scanner STILL jams [merge #{real}]", "Same as the first one.\n"))
        shown = json.loads(self.postdesk("ticket", "show", dup, "--json"))
        print(f"   ticket {dup}: status={shown['status']} merged_into={shown['merged_into']}")
        late = EmailMessage()
        late["From"] = f"Dave Customer <{DAVE}>"
        late["To"] = SUPPORT
        late["Subject"] = f"Re: [#{dup}] Scanner STILL jams"
        late.set_content("It also smells of toner.\n")
        self.send(late)
        actions = json.loads(self.postdesk("ticket", "show", real, "--json"))["actions"]
        print(f"   ticket {real} now holds {len(actions)} actions; the reply tagged [#{dup}] landed there:")
        for a in actions:
            print(f"      {a['author'] or '-':24} {'public ' if a['public'] else 'private'} {a['text'].splitlines()[0][:50] if a['text'] else ''}")

    def scene_forward(self) -> None:
        """Staff forward a customer's mail that reached them directly, with [fwd]."""
        step("7. Forward on behalf: a customer wrote to Bob directly; Bob forwards it with [fwd]")
        fwd = self.staff_mail(
            "Fwd: [fwd] Invoice address",
            "Carol phoned about this too, please update the address.\n\n"
            "---------- Forwarded message ---------\n"
            f"From: Carol Customer <{CAROL}>\n"
            "Date: Fri, 27 Nov 2026 at 10:00\n"
            "Subject: Invoice address\n"
            f"To: Bob Staff <{STAFF}>\n\n"
            "Hello Bob, our invoice address changed to 1 New Street.\n",
        )
        self.send(fwd)
        ack = self.wait_mails(CAROL, 1, "Carol's acknowledgement")[0].message
        number = str(ack["Subject"]).split("[#", 1)[1].split("]", 1)[0]
        t = json.loads(self.postdesk("ticket", "show", number, "--json"))
        print(f"   Carol got {str(ack['Subject'])!r}; ticket {number}: requester={t['requester']}")
        for a in t["actions"]:
            print(f"      {a['author']:24} {'public ' if a['public'] else 'private'} {a['text'].splitlines()[0][:50]}")

    def settled(self) -> bool:
        jobs = json.loads(self.postdesk("outbox", "list", "--json"))
        return all(j["state"] in ("sent", "failed", "suppressed") for j in jobs) and self.postfix.queue_empty()

    def report(self, number: str) -> None:
        step("What each party received")
        # The forged mail itself was also delivered to its Cc (that is Postfix's
        # business); what counts is that the desk sent the forger nothing.
        from_desk = [m for m in self.mails_to(FORGER) if SUPPORT in str(m.message["From"])]
        print(f"-- {FORGER} (the forger): {len(from_desk)} mail(s) from the desk")
        for who in (CUSTOMER, DAVE, CAROL, TEAM, STAFF, SUPPORT, BILLING_CUSTOMER, BILLING_TEAM):
            print(f"-- {who}:")
            for m in self.mails_to(who):
                msg = m.message
                body = msg.get_body(("plain",))
                text = body.get_content().strip() if body else ""
                first = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("##-")][:2]
                att = [p.get_filename() for p in msg.iter_attachments()]
                extra = f" attachments={att}" if att else ""
                print(f"   {str(msg['Subject'])!r} from {msg['From']}{extra}")
                for ln in first:
                    print(f"      | {ln[:90]}")
        step(f"Ticket {number}")
        print(self.postdesk("ticket", "show", number))
        step("Outbox")
        print(self.postdesk("outbox", "list"))
        step("Log lines (postdesk, then Postfix)")
        for name in ("milter", "notifier"):
            for line in (RUN / f"{name}.log").read_text(errors="replace").splitlines():
                if ": msgid=" in line or " to=<" in line:
                    print("  ", line)
        for line in self.postfix.log().splitlines():
            if "status=sent" in line or "milter" in line:
                print("  ", textwrap.shorten(line, 160))


def main() -> int:
    demo = Demo()
    try:
        demo.start()
        demo.play()
    except DemoError as e:
        print(f"make demo: {e}", file=sys.stderr)
        return 69
    except (TimeoutError, RuntimeError, OSError, smtplib.SMTPException) as e:
        text = " ".join(str(e).split())[:300]
        print(f"make demo failed: {type(e).__name__}: {text}; the logs are in {RUN}", file=sys.stderr)
        return 69
    except KeyboardInterrupt:
        print("make demo: interrupted; everything is stopped", file=sys.stderr)
        return 130
    finally:
        demo.stop()
    print(f"\nDone. Everything is stopped; the files are in {RUN}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
