"""Authentication-Results headers (RFC 8601): which to believe, what we write.

Anyone can write ``Authentication-Results: mx.example.com; dmarc=pass`` into
a message.  RFC 8601 section 5: a header is worth only what its
authserv-id's operator is worth, and the border MTA of that operator must
remove copies that arrived from outside claiming its id.  So:

- Nothing is trusted unless ``[trust] authserv_id`` names the verifier that
  runs before postdesk in our own mail system (opendkim/opendmarc as earlier
  milters, rspamd, a filtering gateway).
- Of the headers claiming that id, the topmost one is trusted: a verifier
  inserts its header above what the client sent (RFC 8601 section 4: new
  header fields go at the top), so copies below it came from outside.  The
  rest are ignored, and the milter removes them from the support copy
  together with any that claim postdesk's own id (``claims``).  A verifier
  that writes several headers (opendkim and opendmarc write one each) gets
  only its topmost trusted: put the DMARC verifier last, so that its
  header, the one that says dmarc=, is on top.
- Headers with any other authserv-id are ignored (left in place: they may
  be a mailbox provider's own, and they say nothing to us).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import authres
import authres.arc
import authres.dmarc

_CONTEXT = authres.FeatureContext(authres.dmarc)
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
HEADER = "Authentication-Results"
_SAFE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@\[\]:-]{1,254}$")


def authserv_id_of(value: str) -> str:
    """The authserv-id of a header value (lower-cased), "" when there is none.

    Read leniently (comments removed, first token before ``;``) so a
    malformed forgery is still recognised as claiming an id.
    """
    text = _COMMENT.sub(" ", value.replace("\r", " ").replace("\n", " "))
    head = text.split(";", 1)[0].split()
    return head[0].strip('"').lower() if head else ""


def claims(value: str, authserv_id: str) -> bool:
    return bool(authserv_id) and authserv_id_of(value) == authserv_id.lower()


def trusted_index(values: list[str], authserv_id: str, below_received: list[bool] | tuple[bool, ...] = ()) -> int | None:
    """Position in ``values`` (A-R values in message order) of the one we trust.

    The topmost header of ``authserv_id``, provided it sits above the first
    ``Received:`` header (``below_received[i]`` says it does not).  A verifier
    running in our MTA inserts its header on top, above the Received: line
    our MTA adds; a header below that line came with the message from
    outside.  When the verifier wrote none (it skipped the message), such a
    copy must not be believed: then nothing is, and we verify ourselves.
    """
    if not authserv_id:
        return None
    for i, v in enumerate(values):
        if claims(v, authserv_id):
            if i < len(below_received) and below_received[i]:
                return None
            return i
    return None


def positions(items) -> tuple[list[str], list[bool]]:
    """From (name, value) header items in message order: the
    Authentication-Results values, and whether each comes after a Received:."""
    values: list[str] = []
    below: list[bool] = []
    seen_received = False
    for name, value in items:
        lname = str(name).strip().lower()
        if lname == "received":
            seen_received = True
        elif lname == HEADER.lower():
            values.append(str(value))
            below.append(seen_received)
    return values, below


@dataclass(frozen=True)
class Reported:
    """What a trusted header says (first result per method)."""

    spf: str = "none"
    dkim: str = "none"
    dmarc: str = "none"
    spf_domain: str = ""  # smtp.mailfrom's domain, else smtp.helo
    dkim_domains: tuple[str, ...] = ()  # header.d (or header.i's domain) of passing signatures
    from_domain: str = ""  # dmarc header.from
    policy: str = ""
    methods: frozenset[str] = field(default_factory=frozenset)


WORDS = {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", "policy"}
# RFC 7601/8601 section 2.7: older verifiers write "hardfail" and the pre-RFC words.
ALIASES = {"hardfail": "fail", "temperr": "temperror", "permerr": "permerror"}


def _word(result: str) -> str:
    w = (result or "").lower()
    w = ALIASES.get(w, w)
    return w if w in WORDS else "permerror"


def _domain(value: str) -> str:
    return (value or "").rpartition("@")[2].strip().strip("<>").rstrip(".").lower()


def read(value: str) -> Reported:
    """Parse one header value with authres; raises authres errors on bad syntax."""
    header = _CONTEXT.parse_value(value.replace("\r\n", " ").replace("\n", " "))
    spf: str | None = None
    dmarc: str | None = None
    spf_domain = from_domain = policy = ""
    dkim_words: list[str] = []
    dkim_domains: list[str] = []
    methods = set()
    for r in header.results:
        method = (getattr(r, "method", "") or "").lower()
        methods.add(method)
        props = {(p.type.lower(), p.name.lower()): str(p.value or "") for p in getattr(r, "properties", ())}
        word = _word(getattr(r, "result", ""))
        if method == "spf" and spf is None:
            spf = word
            spf_domain = _domain(props.get(("smtp", "mailfrom"), "") or props.get(("smtp", "helo"), ""))
        elif method == "dkim":
            dkim_words.append(word)
            d = _domain(props.get(("header", "d"), "") or props.get(("header", "i"), ""))
            if word == "pass" and d:
                dkim_domains.append(d)
        elif method == "dmarc" and dmarc is None:
            dmarc = word
            from_domain = _domain(props.get(("header", "from"), ""))
            policy = props.get(("policy", "dmarc"), "")
    from postdesk.auth.dkim import best

    return Reported(
        spf=spf or "none",
        dkim=best(dkim_words) if dkim_words else "none",
        dmarc=dmarc or "none",
        spf_domain=spf_domain,
        dkim_domains=tuple(dict.fromkeys(dkim_domains)),
        from_domain=from_domain,
        policy=policy,
        methods=frozenset(methods),
    )


def write(authserv_id: str, result, sender: str = "", helo: str = "") -> str:
    """Our header value for ``result`` (an AuthResult), written by authres.

    Returned without the field name, for the milter's addheader; folded with
    LF + space (libmilter's convention) so no line passes 998 octets.
    """
    from postdesk.auth.result import AuthResult

    assert isinstance(result, AuthResult)
    if result.source == "none":
        header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=[])
    else:
        # Only plain tokens go into the header: no spaces, quotes, ";" or
        # comments from the envelope (they would change what it says).
        sender = sender if _SAFE.fullmatch(sender or "") else sender.rpartition("@")[2]
        sender = sender if _SAFE.fullmatch(sender or "") else ""
        helo = helo if _SAFE.fullmatch(helo or "") else ""
        spf_props = {"smtp_mailfrom": sender} if sender else ({"smtp_helo": helo} if helo else {})
        results = [authres.SPFAuthenticationResult(result=result.spf, **spf_props)]
        if result.dkim_domains:
            results += [authres.DKIMAuthenticationResult(result="pass", header_d=d) for d in result.dkim_domains]
        else:
            results.append(authres.DKIMAuthenticationResult(result=result.dkim))
        results.append(authres.dmarc.DMARCAuthenticationResult(result=result.dmarc, header_from=result.from_domain or None))
        if result.arc != "none":
            results.append(authres.arc.ARCAuthenticationResult(result=result.arc))
        header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results)
    text = str(header).split(":", 1)[1].strip()
    return fold(text)


def fold(text: str, width: int = 78) -> str:
    """Fold at ``; `` boundaries (LF + tab) so each line stays short."""
    parts = text.split("; ")
    lines = [parts[0]]
    for part in parts[1:]:
        lines[-1] += ";"
        lines.append(part)
    return "\n\t".join(lines) if len(text) > width else text
