"""The message as the milter receives it: headers and body, bounded in memory.

libmilter hands us the message in pieces (one call per header, body chunks of
up to 64 KB).  A support mail may be large and many SMTP sessions run at once
(one thread each), so each message is kept in memory only up to
``[milter] spool_memory`` bytes and then rolls over to an anonymous temporary
file (``tempfile.SpooledTemporaryFile``): never unbounded RAM per session.
"""

from __future__ import annotations

import tempfile


class Spool:
    """Rebuilds the RFC 5322 message from milter callbacks.

    Header values arrive without the leading space after the colon (we do not
    negotiate SMFIP_HDR_LEADSPC) and folded lines joined by a bare LF; the
    body arrives with CRLF line ends (Postfix sends it in SMTP form).  We
    write headers back with CRLF so the whole message uses one line end.
    """

    def __init__(self, memory: int):
        self._file = tempfile.SpooledTemporaryFile(max_size=memory, prefix="postdesk-")
        self.size = 0
        self._in_body = False

    def header(self, name: str, value: bytes) -> None:
        value = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self._write(name.encode("ascii", "surrogateescape") + b": " + value + b"\r\n")

    def end_of_headers(self) -> None:
        if not self._in_body:
            self._in_body = True
            self._write(b"\r\n")

    def body(self, chunk: bytes) -> None:
        self.end_of_headers()
        self._write(chunk)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    @property
    def on_disk(self) -> bool:
        """True once the message rolled over to a temporary file."""
        return bool(getattr(self._file, "_rolled", False))

    def read(self) -> bytes:
        """The whole message (the ingest API takes bytes)."""
        self.end_of_headers()
        self._file.seek(0)
        return self._file.read()

    def discard(self) -> None:
        """Drop what was kept (the message went over the size limit); ``size`` stays."""
        self._file.seek(0)
        self._file.truncate()

    def close(self) -> None:
        self._file.close()
