"""The language a customer writes in, so their mail goes out in it.

First what the sender's client says: ``Content-Language`` (RFC 3282) on the
message or on its first text part (Outlook and Thunderbird set it from the
writer's editor language).  Without it, a small stop-word count over the
first 2,000 characters of the new text: the language whose commonest short
words ("the", "und", "le", ...) occur most, when at least ``MIN_HITS``
occur and it leads the next language by half as many again.

Why not a statistical identifier (py3langid, langdetect, lingua, all on
PyPI): the pipe(8) path starts a process per message, and py3langid loads
its model in 0.8 s, langdetect its profiles in about as long; lingua's
models are hundreds of MB.  We only choose among languages with mail
templates, and a wrong or empty guess costs little: the mail then goes in
the department's or the configured language.  The counts take
microseconds and are deterministic (langdetect is not, unless seeded).
"""

from __future__ import annotations

import re
from collections import Counter
from email.message import EmailMessage

from postdesk.config import language_tag

MIN_HITS = 3
SAMPLE = 2000  # characters of text looked at
_WORD = re.compile(r"[^\W\d_]+")

# Frequent short words that are rare in the other languages of the table.
STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are was were you your have has not this that with for from can could would please thanks thank what when there which will".split()),
    "de": frozenset("der die das und ist sind nicht ich sie wir mit für auf ein eine einen dem den des bitte danke kann können wurde habe haben auch noch wie".split()),
    "fr": frozenset("le la les et est sont pas je vous nous avec pour une des du dans merci peut bonjour mon votre ne ce qui que".split()),
    "es": frozenset("el los las y es son no yo usted con para una por del gracias puede hola mi su que pero muy está".split()),
    "it": frozenset("il lo gli e è sono non io voi noi con per una degli grazie può ciao mio suo che ma molto della".split()),
    "nl": frozenset("de het een en is zijn niet ik jij wij met voor van dank kunt alstublieft mijn uw dat maar ook graag".split()),
    "pt": frozenset("o os as e é são não eu você nós com para uma dos obrigado obrigada pode olá meu seu que mas muito está".split()),
}


# Each stop word and the languages it counts for: one lookup per word.
_LANGS_OF: dict[str, tuple[str, ...]] = {}
for _lang, _words in STOPWORDS.items():
    for _w in _words:
        _LANGS_OF[_w] = _LANGS_OF.get(_w, ()) + (_lang,)


def declared(message: EmailMessage) -> str:
    """The first tag of a Content-Language header (message, else first text part), "" for none."""
    values = [message.get("Content-Language", "")]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            values.append(part.get("Content-Language", ""))
            break
    for value in values:
        first = language_tag(str(value or "").split(",")[0])
        if first:
            return first
    return ""


def guess(text: str) -> str:
    """The language of ``text`` by stop-word count, "" when unsure."""
    counts = {lang: 0 for lang in STOPWORDS}
    langs_of = _LANGS_OF
    for word, n in Counter(_WORD.findall(text[:SAMPLE].lower())).items():
        for lang in langs_of.get(word, ()):
            counts[lang] += n
    ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)
    (best, hits), (_, second) = ranked[0], ranked[1]
    if hits >= MIN_HITS and hits >= second * 1.5:
        return best
    return ""


def detect(message: EmailMessage, text: str) -> str:
    """Content-Language if the sender's client declared one, else a guess from ``text``."""
    return declared(message) or guess(text)
