"""Step: every attachment of a message, decoded, with a cleaned filename.

What counts (docs/filter.md): every leaf part with a
filename or ``Content-Disposition: attachment``; inline images with a
Content-ID; attached messages (message/rfc822) stored whole as ``.eml``;
any other non-text part that is not the body.  TNEF (``winmail.dat``,
Outlook's rich-text wrapper) is unpacked with tnefparse: its files become
the attachments (``postdesk.filter.tnef``); one that holds no file, or that
tnefparse cannot read, is kept as it came.  Filenames arrive RFC 2231 encoded (parameter
continuations and charsets) or, against the RFCs but commonly, as RFC 2047
encoded-words; both are decoded.  The filename is metadata only: the store
writes files by content hash, but the name still reaches mail clients and
the admin's ``attachment get``, so it is cut to a basename without path
separators or controls, at most 255 characters.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser

from postdesk.filter import headers as hdr
from postdesk.filter import parts, tnef
from postdesk.filter.decision import Attachment

MAX_FILENAME = 255
_EML_POLICY = policy.default.clone(refold_source="none")


def clean_filename(name: str, fallback: str = "attachment") -> str:
    """Basename only, no separators or controls, not "." or "..", <= 255 characters."""
    name = hdr.clean_header(name or "")
    # Windows clients send "C:\\Users\\x\\file.pdf"; anyone can send "../../etc/passwd".
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = name.strip().rstrip(". ")  # Windows drops trailing dots and spaces anyway
    if not name.strip("."):
        name = fallback
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME]
    return name


def _default_name(ct: str, index: int) -> str:
    ext = ".eml" if ct in ("message/rfc822", "message/global") else (mimetypes.guess_extension(ct) or ".bin")
    return f"attachment-{index}{ext}"


def _message_bytes(part: Message) -> bytes:
    """An attached message as bytes, headers as they came (not refolded).

    RFC 2046 section 5.2.1 allows only 7bit, 8bit or binary here, but some
    clients base64 the attached mail; the parser then sees base64 text as
    its headers, so such a part is transfer-decoded instead.
    """
    inner = parts.children(part)
    if not inner or parts.transfer_encoding(part) in ("base64", "quoted-printable"):
        return parts.encoded_message_bytes(part)
    try:
        return inner[0].as_bytes(policy=_EML_POLICY)
    except Exception:
        try:
            return inner[0].as_string(policy=_EML_POLICY).encode("utf-8", "surrogateescape")
        except Exception:
            return b""


def _eml_name(data: bytes, index: int) -> str:
    """An attached message's name: its Subject (read from the bytes stored, so a transfer-encoded one too)."""
    try:
        raw = next((v for k, v in BytesHeaderParser(policy=_EML_POLICY).parsebytes(data[:65536]).raw_items() if k.lower() == "subject"), "")
    except Exception:
        raw = ""
    subject = hdr.decode_header(str(raw))[:200]
    return clean_filename(subject + ".eml", _default_name("message/rfc822", index)) if subject else _default_name("message/rfc822", index)


@dataclass(frozen=True)
class Found:
    attachments: tuple[Attachment, ...]
    truncated: bool  # more than max_attachments were present
    total: int


def collect(msg: Message, max_attachments: int) -> Found:
    """The attachments of ``msg`` (the first ``max_attachments``); never raises."""
    out: list[Attachment] = []
    total = 0
    try:
        for part, in_alt in parts.leaves(msg):
            if part is msg and not parts.is_container(part) and parts.disposition(part) != "attachment":
                # A single-part message is its own body unless it says it is an attachment.
                if parts.content_type(part) in ("text/plain", "text/html") or parts.classify(part) == "body":
                    continue
            if parts.classify(part, in_alt) != "attachment":
                continue
            total += 1
            if len(out) >= max_attachments:
                continue
            ct = parts.content_type(part)
            index = total
            if ct in ("message/rfc822", "message/global"):
                given = parts.filename(part)
                data = _message_bytes(part)
                name = clean_filename(given, _default_name(ct, index)) if given else _eml_name(data, index)
            else:
                name = clean_filename(parts.filename(part), _default_name(ct, index))
                data = parts.payload_bytes(part)
            if tnef.is_tnef(ct, name):
                unpacked = tnef.unpack(data)
                if unpacked:
                    room = max_attachments - len(out)
                    out.extend(unpacked[:room])
                    total += len(unpacked) - 1
                    continue
            cid = parts.content_id(part)
            disp = parts.disposition(part)
            out.append(
                Attachment(
                    filename=name,
                    content_type=ct,
                    data=data,
                    content_id=cid,
                    inline=bool(disp == "inline" or (cid and disp != "attachment")),
                )
            )
    except RecursionError:
        pass
    return Found(attachments=tuple(out), truncated=total > len(out), total=total)
