"""Files private whatever the umask: `postdesk init` and attachment blobs.

The SQLite database holds the HMAC secret of our Message-IDs and customers'
mail; attachments are customers' files.  Under the common umask 022 nothing
may be readable by other users.
"""

from __future__ import annotations

import os
import stat

from cli_helpers import make_desk, make_mail


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_and_blobs_are_private_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        root = tmp_path / "desk"
        desk = make_desk(root, f"sqlite:///{root}/postdesk.db")  # Store.init, as `postdesk init` runs it
        db = root / "postdesk.db"
        assert mode(db) == 0o600
        assert mode(desk.attachments) == 0o750
        desk.record(make_mail(attachments=[("report.pdf", "application/pdf", b"%PDF-1.4 secret")]))
        for sidecar in (root / "postdesk.db-wal", root / "postdesk.db-shm"):
            if sidecar.exists():
                assert mode(sidecar) & 0o077 == 0, sidecar
        blobs = [p for p in desk.attachments.rglob("*") if p.is_file()]
        assert blobs, "the attachment was not stored"
        for p in blobs:
            assert mode(p) == 0o640, p
        for d in (p for p in desk.attachments.rglob("*") if p.is_dir()):
            assert mode(d) == 0o750, d
    finally:
        os.umask(old)


def test_init_tightens_an_existing_world_readable_database(tmp_path):
    old = os.umask(0o022)
    try:
        root = tmp_path / "desk"
        root.mkdir()
        db = root / "postdesk.db"
        db.touch(mode=0o644)
        os.chmod(db, 0o644)
        make_desk(root, f"sqlite:///{db}")
        assert mode(db) == 0o600
    finally:
        os.umask(old)
