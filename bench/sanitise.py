"""Benchmark: the cost of an HTML mail of about 1 MB, as ratios to parsing
the same mail with Python's ``email`` (``policy.default``), in one run.

    .venv/bin/python bench/sanitise.py [--size 1048576] [--rounds 5]

The mail is what Outlook writes for a long thread: a multipart/alternative
whose HTML part is quoted-printable, full of tables, inline styles, spans,
links, conditional comments and cid: images.  Timed, best of ``--rounds``:

- baseline: ``BytesParser(policy=policy.default).parsebytes`` plus
  ``get_body().get_content()`` of the HTML part (what any consumer pays);
- ``sanitise_html`` of that HTML (nh3);
- ``htmlbody.extract`` (choosing the part, decoding, sanitising);
- the whole filter, ``parse`` + ``decide`` (text, HTML, attachments);
- HTML to text with postdesk's own converter, inscriptis and html2text
  (these two only when installed), for docs/filter.md's choice.

Prints seconds and ratios; exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postdesk import config as configmod  # noqa: E402
from postdesk.filter import decide, htmlbody, parse  # noqa: E402
from postdesk.filter.decision import Envelope  # noqa: E402
from postdesk.filter.html2text import html_to_text  # noqa: E402
from postdesk.sanitise import sanitise_html  # noqa: E402

BLOCK = """<tr><td style="padding:0cm 5.4pt 0cm 5.4pt;border:solid #BFBFBF 1.0pt" valign="top" width="200">
<p class="MsoNormal"><span style="font-size:10.0pt;font-family:&quot;Calibri&quot;,sans-serif;color:#1F497D">Row {i}: the printer on floor {f} <b>stopped</b> after the update &amp; prints blank pages</span></p></td>
<td onmouseover="track({i})" style="background:url(https://tracker.example/{i}.gif);color:red"><a href="https://intranet.example/ticket/{i}">ticket {i}</a>
<img src="cid:image{i}.png@01DB40E1" width="16" height="16"><img src="https://tracker.example/p{i}.gif"></td></tr>
<!--[if gte mso 9]><xml><o:OfficeDocumentSettings><o:AllowPNG/></o:OfficeDocumentSettings></xml><![endif]-->
"""


def make_html(size: int) -> str:
    head = (
        "<html xmlns:o=\"urn:schemas-microsoft-com:office:office\"><head><meta charset=\"utf-8\">"
        "<style>p.MsoNormal{margin:0cm;font-size:11.0pt}</style><script>alert(1)</script></head><body lang=\"DE\">"
        "<div class=\"WordSection1\"><p>Hello,</p><blockquote type=\"cite\"><table class=\"MsoTableGrid\" border=\"1\">"
    )
    parts = [head]
    i = 0
    total = len(head)
    while total < size:
        block = BLOCK.format(i=i, f=i % 7)
        parts.append(block)
        total += len(block)
        i += 1
    parts.append("</table></blockquote><p>Regards</p></div></body></html>")
    return "".join(parts)


def make_mail(html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@customer.example>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Re: [#1042] long thread"
    msg["Message-ID"] = "<bench-sanitise@customer.example>"
    msg.set_content("Hello,\nsee below.\n")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024 * 1024, help="bytes of HTML (default 1 MB)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    html = make_html(args.size)
    raw = make_mail(html)
    config = configmod.from_dict(
        {"organization": {"system_addresses": ["support@example.com"], "reply_to": "support@example.com", "staff": ["@example.com"]}},
        source="<bench>",
    )

    envelope = Envelope("alice@customer.example", ("support@example.com",), client_address="203.0.113.5")

    class NoStore:
        def ticket(self, number):
            return None

        def ticket_for_message_ids(self, ids):
            return None

        def message_seen(self, key, digest=""):
            return False

        def new_tickets_since(self, address, since, include_forged=False, verified_only=False):
            return 0

        def sent_mail(self, ids):
            return {}

        def sent_times(self, address, ticket, limit=2):
            return ()

        def authored_times(self, address, ticket, limit=1):
            return ()

        def secret(self):
            return b"bench"

    def stdlib() -> None:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(("html",))
        assert body is not None and len(body.get_content()) > args.size // 2

    parsed_msg = parse(raw).message
    rows: list[tuple[str, float]] = [
        ("stdlib parse + get_content (baseline)", best(stdlib, args.rounds)),
        ("sanitise_html (nh3)", best(lambda: sanitise_html(html), args.rounds)),
        ("htmlbody.extract (choose, decode, sanitise)", best(lambda: htmlbody.extract(parsed_msg), args.rounds)),
        ("filter parse + decide (whole mail)", best(lambda: decide(parse(raw), envelope, NoStore(), config, datetime(2026, 11, 28)), args.rounds)),
        ("html_to_text, postdesk's own", best(lambda: html_to_text(html), args.rounds)),
    ]
    try:
        from inscriptis import get_text

        rows.append(("html_to_text, inscriptis", best(lambda: get_text(html), args.rounds)))
    except ImportError:
        pass
    try:
        import html2text

        def h2t() -> None:
            conv = html2text.HTML2Text()
            conv.body_width = 0
            conv.handle(html)

        rows.append(("html_to_text, html2text", best(h2t, args.rounds)))
    except ImportError:
        pass
    safe = sanitise_html(html)
    print(f"HTML {len(html):,} bytes, mail {len(raw):,} bytes, sanitised HTML {len(safe):,} bytes; best of {args.rounds}")
    base = rows[0][1]
    for name, t in rows:
        print(f"{name:46} {t * 1000:9.1f} ms  {t / base:6.2f}x stdlib")
    return 0


if __name__ == "__main__":
    sys.exit(main())
