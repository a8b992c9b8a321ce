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


def test_same_milter_resolves_paths_as_postfix_will():
    ours = "unix:/var/spool/postfix/postdesk/milter.sock"
    q = "/var/spool/postfix"
    assert check.same_milter(ours, ours, q)
    assert check.same_milter(ours, "unix:postdesk/milter.sock", q)
    # A chrooted smtpd resolves every path below the queue directory...
    assert check.same_milter(ours, "unix:/postdesk/milter.sock", q, chrooted=True)
    assert not check.same_milter(ours, ours, q, chrooted=True)  # -> /var/spool/postfix/var/spool/postfix/...
    # ...and an unchrooted one takes an absolute path as it is.
    assert not check.same_milter(ours, "unix:/postdesk/milter.sock", q, chrooted=False)
    assert not check.same_milter(ours, "unix:/run/other.sock", q)
    assert check.same_milter("inet:8891@127.0.0.1", "inet:8891@localhost", q)
    assert check.milter_address_for(ours, q, chrooted=True) == "unix:/postdesk/milter.sock"
    assert check.milter_address_for("unix:/run/postdesk/milter.sock", q, chrooted=True) is None


def test_check_reports_all_ok_with_warnings_only():
    r = check.Report()
    r.warning("slow")
    assert r.status() == 0


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


DEBIAN_SMTP = "smtp inet n - y - - smtpd\nsubmission inet n - y - - smtpd -o smtpd_milters=unix:/postdesk/milter.sock\npickup unix n - y 60 1 pickup\n"


def _chrooted_postfix(tmp_path, main_cf: str) -> str:
    d = tmp_path / "chroot-pf"
    d.mkdir()
    (d / "main.cf").write_text("queue_directory = /var/spool/postfix\n" + main_cf)
    (d / "master.cf").write_text(DEBIAN_SMTP)
    return str(d)


def test_chrooted_smtpd_with_the_host_path_is_the_451_problem(make_config, tmp_path):
    need(shutil.which("postconf") is not None or os.path.exists("/usr/sbin/postconf"), "postconf is not installed")
    config = make_config(milter={"socket": "unix:/var/spool/postfix/postdesk/milter.sock"})
    d = _chrooted_postfix(tmp_path, "smtpd_milters = inet:127.0.0.1:11332, unix:/var/spool/postfix/postdesk/milter.sock\n")
    report = check.Report()
    view = check.check_postfix(config, report, d)
    assert [s.chrooted for s in view.services] == [True, True]
    problems = [what + " / " + fix for _, what, fix in report.problems]
    assert len(problems) == 1, report.lines  # submission's -o override is right
    assert "smtp/inet: smtpd runs chrooted" in problems[0]
    assert "451 4.7.1" in problems[0]
    # The fix keeps the other milter, first, and writes ours relative to the chroot.
    assert f"postconf -c {d} -e 'smtpd_milters = inet:127.0.0.1:11332, unix:/postdesk/milter.sock' && postfix -c {d} reload" in problems[0]


def test_chroot_dash_means_no_since_postfix_3(make_config, tmp_path):
    need(shutil.which("postconf") is not None or os.path.exists("/usr/sbin/postconf"), "postconf is not installed")
    config = make_config(milter={"socket": "unix:/var/spool/postfix/postdesk/milter.sock"})
    d = _postfix_dir(tmp_path, "smtpd_milters = unix:/var/spool/postfix/postdesk/milter.sock\n")
    (tmp_path / "pf" / "master.cf").write_text("smtp inet n - - - - smtpd\n")
    report = check.Report()
    view = check.check_postfix(config, report, d)
    assert [s.chrooted for s in view.services] == [False]
    assert report.problems == []


def test_default_milter_action_is_fine_and_accept_is_a_problem(make_config, tmp_path):
    need(shutil.which("postconf") is not None or os.path.exists("/usr/sbin/postconf"), "postconf is not installed")
    config = make_config(milter={"socket": "unix:/run/postdesk/milter.sock"})
    d = _postfix_dir(tmp_path, "smtpd_milters = unix:/run/postdesk/milter.sock\n")  # no milter_default_action: 3.7's default
    report = check.Report()
    check.check_postfix(config, report, d)
    assert report.problems == [], report.lines
    check.postconf(["-e", "milter_default_action = accept"], d)
    report = check.Report()
    check.check_postfix(config, report, d)
    assert any("never recorded" in what and "postdesk import" in fix for _, what, fix in report.problems)


def test_setup_postfix_prints_then_applies_with_a_backup(make_config, tmp_path):
    need(shutil.which("postconf") is not None or os.path.exists("/usr/sbin/postconf"), "postconf is not installed")
    config = make_config(milter={"socket": "unix:/var/spool/postfix/postdesk/milter.sock", "socket_group": ""})
    d = _chrooted_postfix(tmp_path, "smtpd_milters = inet:127.0.0.1:11332\n")
    before = (tmp_path / "chroot-pf" / "main.cf").read_text()
    out = io.StringIO()
    assert check.setup_postfix(config, postfix_config=d, out=out) == 0
    assert "'smtpd_milters = inet:127.0.0.1:11332, unix:/postdesk/milter.sock'" in out.getvalue()
    assert (tmp_path / "chroot-pf" / "main.cf").read_text() == before  # printing changes nothing
    out = io.StringIO()
    assert check.setup_postfix(config, apply=True, postfix_config=d, out=out) == 0
    backups = sorted(p.name for p in (tmp_path / "chroot-pf").glob("*.postdesk-*"))
    assert [b.split(".postdesk-")[0] for b in backups] == ["main.cf", "master.cf"]
    assert (tmp_path / "chroot-pf" / backups[0]).read_text() == before
    assert check.postconf(["-h", "smtpd_milters"], d).strip() == "inet:127.0.0.1:11332, unix:/postdesk/milter.sock"
    report = check.Report()
    check.check_postfix(config, report, d)
    assert report.problems == [], report.lines


def test_socket_group_problem_says_adduser_never_socket_group(make_config, tmp_path):
    import grp
    import pwd
    import socket as sk

    need(os.geteuid() == 0, "needs root to chgrp the socket")
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        need(False, "no user postfix")
    import tempfile

    base = tempfile.mkdtemp(prefix="postdesk-check-", dir="/tmp")  # pytest's tmp is 0700 above
    os.chmod(base, 0o755)
    path = os.path.join(base, "milter.sock")
    s = sk.socket(sk.AF_UNIX, sk.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    try:
        nogroup = grp.getgrnam("nogroup").gr_gid
        os.chown(path, 0, nogroup)
        os.chmod(path, 0o660)
        report = check.Report()
        check.check_socket(make_config(milter={"socket": f"unix:{path}"}), report)
        (what, fix), = [(w, f) for _, w, f in report.problems]
        assert "not in group nogroup" in what
        assert fix == "adduser postfix nogroup && postfix reload"
        assert "socket_group" not in "\n".join(report.lines)
    finally:
        s.close()
        shutil.rmtree(base)


def test_permissions_are_checked_as_the_service_user_not_as_root(make_config, tmp_path):
    need(os.geteuid() == 0, "needs root to become another user")
    os.chmod(tmp_path, 0o755)
    attachments = tmp_path / "attachments"
    attachments.mkdir(mode=0o755)  # root's, not writable by nobody
    config = make_config(store={"url": f"sqlite:///{tmp_path}/db.sqlite", "attachments": str(attachments)})
    report = check.Report()
    check.check_permissions(config, report, "nobody")
    assert any("user nobody cannot write the attachment directory" in what for _, what, _ in report.problems), report.lines
    report = check.Report()
    check.check_permissions(config, report, "root")
    assert not any("attachment directory" in what for _, what, _ in report.problems), report.lines


def test_every_step_can_be_skipped_by_name():
    """The CLI's --skip list is check's own list of steps (templates included)."""
    from postdesk import check
    from postdesk.cli.parser import _skip_list

    assert _skip_list(",".join(check.STEPS)) == frozenset(check.STEPS)
    assert "templates" in _skip_list("templates")
