"""``postdesk check`` pieces that need no Postfix: parsing and exit codes.

The whole check against a real private Postfix is in test_milter_postfix.py.
"""

from __future__ import annotations

import io
import os

from postdesk import check


def test_split_milters_reads_plain_and_braced_entries():
    assert check.split_milters("unix:/a/b, { inet:123@localhost, default_action = accept } unix:x") == [
        ("unix:/a/b", {}),
        ("inet:123@localhost", {"default_action": "accept"}),
        ("unix:x", {}),
    ]
    assert check.split_milters("") == []


def test_same_milter_resolves_chroot_and_relative_paths():
    ours = "unix:/var/spool/postfix/postdesk/milter.sock"
    q = "/var/spool/postfix"
    assert check.same_milter(ours, ours, q)
    assert check.same_milter(ours, "unix:postdesk/milter.sock", q)
    assert check.same_milter(ours, "unix:/postdesk/milter.sock", q)  # chrooted smtpd
    assert not check.same_milter(ours, "unix:/run/other.sock", q)
    assert check.same_milter("inet:8891@127.0.0.1", "inet:8891@localhost", q)


def test_report_status_prefers_config_problems():
    r = check.Report()
    assert r.status() == 0
    r.problem(check.DOWN, "x", "y")
    assert r.status() == 69
    r.problem(check.CONFIG, "x", "y")
    assert r.status() == 78


def test_postfix_may_connect_needs_write_permission():
    class St:
        st_uid = 0
        st_gid = 0
        st_mode = 0o140600

    assert not check.postfix_may_connect(St())
    St.st_mode = 0o140666
    assert check.postfix_may_connect(St())


def test_run_never_exits_1_and_prints_each_fix(make_config, tmp_path, monkeypatch):
    # Nothing set up: no database, no Postfix settings for this config, no milter.
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    config = make_config(milter={"socket": f"unix:{tmp_path}/none.sock"})
    out = io.StringIO()
    status = check.run(config, postfix_config=str(tmp_path / "no-such-postfix"), dns=False, out=out)
    text = out.getvalue()
    assert status in (69, 78)
    assert text.count("problem:") == text.count("  fix:") >= 2
    assert "postdesk init" in text
