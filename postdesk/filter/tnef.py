"""TNEF (``winmail.dat``, application/ms-tnef): Outlook's wrapper, unpacked.

Outlook and Exchange send "rich text" mail as one opaque ``winmail.dat``
that no other client opens; the files the sender attached are inside it.
tnefparse reads the format; what it finds becomes ordinary attachments.
A TNEF that holds no file (only the rich-text body), or that tnefparse
cannot read, is kept whole, so nothing the sender sent is lost.
"""

from __future__ import annotations

import logging
import mimetypes

from postdesk.filter import headers as hdr
from postdesk.filter.decision import Attachment

log = logging.getLogger("postdesk.filter")

TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
MAX_FILES = 100  # a hostile TNEF may claim thousands; the message's limit applies too


def is_tnef(content_type: str, filename: str) -> bool:
    return content_type in TNEF_TYPES or filename.lower() == "winmail.dat"


def _name(raw: object, index: int) -> str:
    from postdesk.filter.attachments import clean_filename  # attachments imports this module

    if isinstance(raw, bytes):
        raw = hdr.lenient_decode(raw.split(b"\x00", 1)[0])
    name = str(raw or "").split("\x00", 1)[0]
    return clean_filename(name, f"attachment-{index}.bin")


def unpack(data: bytes) -> list[Attachment]:
    """The files inside a TNEF blob; [] when there are none or it cannot be read."""
    try:
        from tnefparse import TNEF

        parsed = TNEF(data, do_checksum=False)
    except Exception as e:  # not TNEF after all, truncated, or a tnefparse bug: keep the blob
        log.info("winmail.dat not unpacked: %s", type(e).__name__)
        return []
    out: list[Attachment] = []
    for i, att in enumerate(parsed.attachments[:MAX_FILES], start=1):
        try:
            raw_name = att.long_filename()
        except Exception:
            raw_name = getattr(att, "_name", b"")
        body = att.data if isinstance(att.data, bytes) else b""
        if not body and not raw_name:
            continue
        name = _name(raw_name, i)
        ct = mimetypes.guess_type(name)[0] or "application/octet-stream"
        out.append(Attachment(filename=name, content_type=ct, data=body))
    return out
