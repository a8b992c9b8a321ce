"""``postdesk attachment get ID -o FILE``: an attachment's bytes, checked
against the sha256 recorded when the mail arrived.

The bytes come through the store's blob backend (database rows or files,
``[store] blobs``), a chunk at a time.  The file is written beside the
target and renamed, so an error leaves no half-written file; an existing
FILE is kept unless ``--force`` (73, EX_CANTCREAT, as install(1)-like tools
answer), because a mistyped name must not destroy the admin's own file.
"""

from __future__ import annotations

import os
import sys

from postdesk.cli.common import open_store
from postdesk.cli.errors import EX_CANTCREAT, CommandError
from postdesk.outcomes import EX_DATAERR, EX_NOINPUT, EX_OK


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cmd_get(args, config) -> int:
    import tempfile

    from postdesk.store.blobs import BlobCorrupt, BlobError

    store = open_store(config)
    try:
        meta, blob = store.attachment(args.id)
        target = None if args.output == "-" else os.path.abspath(args.output)
        if target is not None and os.path.lexists(target) and not args.force:
            raise CommandError(f"{args.output} exists; not overwriting it (use --force to replace it)", EX_CANTCREAT)

        def copy(out) -> None:
            # Blob checks size and sha256 after the last chunk: before the rename.
            try:
                for chunk in blob:
                    out.write(chunk)
            except BlobCorrupt:
                raise CommandError(f"attachment {args.id}: the stored bytes do not match their sha256", EX_DATAERR) from None
            except BlobError as e:
                raise CommandError(f"attachment {args.id}: cannot read its bytes: {e}", EX_NOINPUT) from None

        if target is None:
            copy(sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return EX_OK
        try:
            fd, tmp = tempfile.mkstemp(prefix=".postdesk-", dir=os.path.dirname(target))
        except OSError as e:
            raise CommandError(f"cannot create {args.output}: {e.strerror}", EX_CANTCREAT) from None
        try:
            with os.fdopen(fd, "wb") as out:
                copy(out)
            os.chmod(tmp, 0o644 & ~_umask())
            if args.force:
                os.replace(tmp, target)
            else:
                # link(2) fails if the name appeared meanwhile: no race with the check above.
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise CommandError(f"{args.output} exists; not overwriting it (use --force to replace it)", EX_CANTCREAT) from None
        except OSError as e:
            raise CommandError(f"cannot write {args.output}: {e.strerror}", EX_CANTCREAT) from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    finally:
        store.close()
    print(f"attachment {args.id}: {meta.get('filename') or '(no name)'}, {meta.get('size')} bytes -> {args.output}", file=sys.stderr)
    return EX_OK
