"""``make demo``: the whole postdesk flow through a real, private Postfix.

Starts, under ``demo-run/`` in this checkout: an SMTP sink that keeps every
mail Postfix relays as a file (``demo-run/sink/NNNN.eml``); a private Postfix
instance on a loopback high port with the postdesk milter attached; the
milter; and the notifier with a five-second quiet period.  Then it plays a
conversation (a customer writes; staff reply twice quickly, once with an
attachment; a private note; the customer answers; staff close the ticket),
prints what each party received, the ticket, and the log lines, and stops
everything it started.  It never touches the system Postfix or port 25.

Needs root (Postfix's master runs as root) and the Debian postfix package;
``make demo`` installs what is missing.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import sys
import textwrap
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.postfix import PrivatePostfix, Sink, available, free_port, toml_dumps, unix_socket_open, wait_for  # noqa: E402

RUN = REPO / "demo-run"
CUSTOMER = "alice@customer.example"
STAFF = "bob@example.com"
TEAM = "team@example.com"
SUPPORT = "support@example.com"
QUIET = 5  # seconds; 120 in production


def step(text: str) -> None:
    print(f"\n== {text}")


class Demo:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.sink: Sink | None = None
        self.postfix: PrivatePostfix | None = None
        self.config = RUN / "postdesk.toml"
        self.socket = RUN / "milter.sock"

    # -- plumbing ---------------------------------------------------------------

    def postdesk(self, *args: str, check: bool = True) -> str:
        cmd = [sys.executable, "-m", "postdesk", "--config", str(self.config), *args]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if check and p.returncode != 0:
            raise SystemExit(f"`postdesk {' '.join(args)}` exited {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def spawn(self, name: str, *args: str) -> None:
        log = open(RUN / f"{name}.log", "wb")
        cmd = [sys.executable, "-m", "postdesk", "--config", str(self.config), *args]
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))

    def send(self, msg: EmailMessage) -> None:
        if "Message-ID" not in msg:
            msg["Message-ID"] = make_msgid(domain=msg["From"].split("@")[-1].rstrip(">"))
        with smtplib.SMTP("127.0.0.1", self.postfix.port, timeout=30) as smtp:
            smtp.send_message(msg)
        print(f"   sent: {msg['From']} -> {msg['To']}: {msg['Subject']}")

    def mails_to(self, address: str) -> list:
        return [m for m in self.sink.messages if address in m.recipients]

    def wait_mails(self, address: str, count: int, what: str, timeout: float = 60) -> list:
        return wait_for(lambda: len(self.mails_to(address)) >= count and self.mails_to(address), timeout, what)

    # -- setup and teardown -----------------------------------------------------

    def start(self) -> None:
        ok, why = available()
        if not ok:
            raise SystemExit(f"make demo: {why}")
        if RUN.exists():
            shutil.rmtree(RUN)
        RUN.mkdir()
        self.sink = Sink(directory=RUN / "sink").start()
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
                    # Nothing is trusted by default: staff send from loopback here.
                    "trust": {"trusted_networks": ["127.0.0.0/8"]},
                }
            )
        )
        self.postdesk("init")
        self.spawn("milter", "milter")
        wait_for(lambda: unix_socket_open(str(self.socket)), 15, "the milter socket")
        self.postfix = PrivatePostfix(RUN / "postfix", port, self.sink.port, milter_socket=f"unix:{self.socket}").start()
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
        self.wait_mails(TEAM, 2, "the team alert for the customer's answer")

        step("5. Staff close the ticket ([closed])")
        close = EmailMessage()
        close["From"] = f"Bob Staff <{STAFF}>"
        close["To"] = SUPPORT
        close["Subject"] = f"Re: [#{number}] Printer broken [closed]"
        close.set_content("Glad to hear it. Closing this ticket.\n")
        self.send(close)
        self.wait_mails(CUSTOMER, 3, "the closing update")
        time.sleep(QUIET + 2)  # let a wrongly-sent extra mail show up before we count

        self.report(number)

    def report(self, number: str) -> None:
        step("What each party received")
        for who in (CUSTOMER, TEAM, SUPPORT):
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
    except TimeoutError as e:
        print(f"\ndemo failed: {e}; logs are in {RUN}", file=sys.stderr)
        return 69
    finally:
        demo.stop()
    print(f"\nDone. Everything is stopped; the files are in {RUN}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
