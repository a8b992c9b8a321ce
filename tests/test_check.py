"""``postdesk check``: parsing, exit codes, and the Postfix settings it reads
(through the real ``postconf -c DIR`` on a scratch configuration).

The whole check against a running private Postfix is in test_milter_postfix.py.
"""

from __future__ import annotations

import io
import os
import shutil

from conftest import need
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


def _postfix_dir(tmp_path, main_cf: str):
    d = tmp_path / "pf"
    d.mkdir()
    (d / "main.cf").write_text(main_cf)
    (d / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    return str(d)


def test_postdesk_must_be_the_last_milter(make_config, tmp_path):
    config = make_config(milter={"socket": "unix:/run/postdesk/milter.sock"})
    need(shutil.which("postconf") is not None or os.path.exists("/usr/sbin/postconf"), "postconf is not installed")
    first = _postfix_dir(tmp_path, "smtpd_milters = unix:/run/postdesk/milter.sock, inet:127.0.0.1:11332\nmilter_default_action = tempfail\n")
    report = check.Report()
    check.check_postfix(config, report, first)
    assert any("not the last of smtpd_milters" in what for _, what, _ in report.problems)

    last = tmp_path / "last"
    last.mkdir()
    (last / "main.cf").write_text("smtpd_milters = inet:127.0.0.1:11332, unix:/run/postdesk/milter.sock\nmilter_default_action = tempfail\n")
    (last / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    report = check.Report()
    check.check_postfix(config, report, str(last))
    assert report.problems == []


def test_content_filter_with_loopback_trust_is_pointed_out(make_config, tmp_path):
    need(shutil.which("postconf") is not None or os.path.exists("/usr/sbin/postconf"), "postconf is not installed")
    d = _postfix_dir(tmp_path, "smtpd_milters = unix:/run/postdesk/milter.sock\nmilter_default_action = tempfail\ncontent_filter = smtp-amavis:[127.0.0.1]:10024\n")
    loopback = make_config(milter={"socket": "unix:/run/postdesk/milter.sock"})
    report = check.Report()
    check.check_postfix(loopback, report, d)
    assert any("XFORWARD" in line for line in report.lines)

    lan_only = make_config(milter={"socket": "unix:/run/postdesk/milter.sock"}, trust={"trusted_networks": ["192.0.2.0/24"]})
    report = check.Report()
    check.check_postfix(lan_only, report, d)
    assert not any("XFORWARD" in line for line in report.lines)
