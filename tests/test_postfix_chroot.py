"""The documented wiring against a Postfix whose smtpd runs chrooted.

Debian's master.cf runs smtpd chrooted in the queue directory, so the milter
socket at QUEUE/postdesk/milter.sock must be written ``unix:/postdesk/milter.sock``.
This test does what docs/postfix.md says, literally, on a private instance
(as root): the socket directory 0750 in the service's group, the socket
0660 in that group, ``postdesk setup-postfix --apply`` (which backs up
main.cf/master.cf, runs ``postconf -e``, puts user postfix in the group and
reloads), then mail through the chrooted smtpd becomes a ticket and
``postdesk check`` agrees.  Then the old advice (the host path in
smtpd_milters) gives 451 at SMTP time and check names the chroot.

A group of its own stands in for ``postdesk`` (created and removed here), so
the test changes nothing a real installation uses.
"""

from __future__ import annotations

import grp
import io
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from conftest import BASE_CONFIG, need

from postdesk import check
from postdesk import config as configmod
from postdesk.testing.desk import submit
from postdesk.testing.postfix import PrivatePostfix, available
from postdesk.testing.smtp import Sink
from postdesk.testing.toml import toml_dumps
from postdesk.testing.wait import free_port, unix_socket_open, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP = "pdchroottest"
# What Debian's configure-instance.sh copies into a chroot (the ones that exist here).
CHROOT_FILES = ("etc/localtime", "etc/services", "etc/resolv.conf", "etc/hosts", "etc/nsswitch.conf", "etc/host.conf")


class ChrootedPostfix(PrivatePostfix):
    """A private instance whose smtpd runs chrooted, as Debian's does."""

    def _write_master_cf(self) -> None:
        super()._write_master_cf()
        master = self.etc / "master.cf"
        ours = f"127.0.0.1:{self.port}  inet  n  -  n  -  -  smtpd"
        text = master.read_text()
        assert ours in text
        master.write_text(text.replace(ours, f"127.0.0.1:{self.port}  inet  n  -  y  -  -  smtpd"))
        for name in CHROOT_FILES:
            if os.path.exists("/" + name):
                target = self.spool / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2("/" + name, target)


def _send(port: int, subject: str) -> tuple[int, str]:
    raw = (f"From: Carol <carol@customer.example>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
           f"Message-ID: <{uuid.uuid4().hex}@customer.example>\r\n\r\nHello from outside the chroot.\r\n").encode()
    return submit(port, raw, sender="carol@customer.example")


@pytest.fixture
def group():
    need(os.geteuid() == 0, "needs root (a group, a chrooted Postfix)")
    subprocess.run(["groupdel", GROUP], capture_output=True)
    subprocess.run(["groupadd", "--system", GROUP], check=True, capture_output=True)
    try:
        yield GROUP
    finally:
        subprocess.run(["groupdel", GROUP], capture_output=True)


@pytest.mark.postfix
def test_documented_wiring_works_with_a_chrooted_smtpd(tmp_path, group):
    ok, why = available()
    need(ok, why)
    sink = Sink().start()
    postfix = ChrootedPostfix(tmp_path, free_port(), sink.port, milter_socket=None)
    milter = None
    try:
        postfix.start()
        # docs/postfix.md: the socket directory below the queue directory, 0750, the service's group.
        sockdir = postfix.spool / "postdesk"
        sockdir.mkdir(mode=0o750)
        os.chmod(sockdir, 0o750)
        shutil.chown(sockdir, "root", group)
        data = {section: dict(values) for section, values in BASE_CONFIG.items()}
        data["store"] = {"url": f"sqlite:///{tmp_path}/postdesk.db", "attachments": str(tmp_path / "attachments")}
        data["milter"] = {"socket": f"unix:{sockdir}/milter.sock", "socket_group": group, "socket_mode": "0660"}
        data["log"] = {"target": "stderr"}
        config_path = tmp_path / "postdesk.toml"
        config_path.write_text(toml_dumps(data))
        config = configmod.load(config_path)
        env = dict(os.environ, PYTHONPATH=ROOT)
        subprocess.run([sys.executable, "-m", "postdesk", "--config", str(config_path), "init"], check=True, capture_output=True, env=env)
        log = open(tmp_path / "milter.log", "wb")
        milter = subprocess.Popen([sys.executable, "-m", "postdesk", "--config", str(config_path), "milter"], stdout=log, stderr=log, env=env)
        wait_for(lambda: unix_socket_open(str(sockdir / "milter.sock")) or milter.poll() is not None, 20, "the milter socket")
        assert milter.poll() is None, (tmp_path / "milter.log").read_text()

        # What setup-postfix proposes for this host, then applies.
        p = subprocess.run([sys.executable, "-m", "postdesk", "--config", str(config_path), "setup-postfix", "--postfix-config", str(postfix.etc)], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr
        assert f"adduser postfix {group}" in p.stdout
        assert "'smtpd_milters = unix:/postdesk/milter.sock'" in p.stdout
        p = subprocess.run([sys.executable, "-m", "postdesk", "--config", str(config_path), "setup-postfix", "--apply", "--postfix-config", str(postfix.etc)], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr
        assert "postfix reload" in p.stdout
        assert "postfix" in grp.getgrnam(group).gr_mem
        assert len(list(postfix.etc.glob("main.cf.postdesk-*"))) == 1

        code, text = wait_for(lambda: (lambda r: r if r[0] == 250 else None)(_send(postfix.port, "Chrooted and fine")), 15, "a 250 through the chrooted smtpd")
        assert code == 250, text
        tickets = subprocess.run([sys.executable, "-m", "postdesk", "--config", str(config_path), "ticket", "list", "--json"], capture_output=True, text=True, env=env)
        assert "Chrooted and fine" in tickets.stdout
        out = io.StringIO()
        assert check.run(config, postfix_config=str(postfix.etc), skip={"dns"}, out=out) == 0, out.getvalue()
        assert "(chrooted smtpd)" in out.getvalue()

        # The old advice: the host path in main.cf.  Every mail gets a 4xx.
        postfix.postconf(smtpd_milters=f"unix:{sockdir}/milter.sock")
        postfix.reload()
        code, text = _send(postfix.port, "Wrong path")
        assert 400 <= code < 500, (code, text)
        out = io.StringIO()
        assert check.run(config, postfix_config=str(postfix.etc), skip={"dns"}, out=out) == 78
        assert "smtpd runs chrooted" in out.getvalue() and "unix:/postdesk/milter.sock" in out.getvalue()
    finally:
        if milter is not None and milter.poll() is None:
            milter.terminate()
            milter.wait(10)
        postfix.stop()
        sink.stop()
