"""``postdesk blobs migrate --to database|directory [--batch N] [--remove-source]``.

Moves attachment bytes between the two backends (``postdesk.store.blobs.migrate``),
printing progress after every batch; rerunning continues where a run
stopped.  Exit 0 when every referenced blob is in the target, 65
(EX_DATAERR) when some were missing or did not match their sha256 (listed).
"""

from __future__ import annotations

import sys

from postdesk.cli.common import open_store
from postdesk.outcomes import EX_DATAERR, EX_OK


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def cmd_migrate(args, config) -> int:
    from postdesk.store.blobs.migrate import migrate

    store = open_store(config)
    try:
        if store.blobs.name != args.to:
            print(
                f"note: [store] blobs is {config.store.blobs!r} ({store.blobs.name}): new attachments still go there; "
                f'set blobs = "{args.to}" (on every host) so they stop',
                file=sys.stderr,
            )

        def report(p, last: str) -> None:
            print(f"up to {last[:12]}...: moved {p.moved} ({_mb(p.moved_bytes)}), already there {p.already}, removed from the source {p.removed}", file=sys.stderr)

        p = migrate(store, args.to, batch=args.batch, remove_source=args.remove_source, report=report)
    finally:
        store.close()
    print(f"blobs -> {args.to}: moved {p.moved} ({_mb(p.moved_bytes)}), already there {p.already}, removed from the source {p.removed}, "
          f"missing {len(p.missing)}, corrupt {len(p.corrupt)}")
    for sha in p.missing:
        print(f"missing: {sha} (in neither backend)", file=sys.stderr)
    for sha in p.corrupt:
        print(f"corrupt: {sha} (bytes do not match; left in the source)", file=sys.stderr)
    return EX_OK if p.ok else EX_DATAERR
