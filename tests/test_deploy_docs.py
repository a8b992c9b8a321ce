"""The deployment docs say one thing: the same command blocks in README and
docs/postfix.md, no sudo (a minimal Debian has none), no useradd, units
that run /usr/bin/postdesk with the mail facility.  (The blocks themselves
run in CI: .ci/run builds and installs the package; the wiring runs in
tests/test_postfix_chroot.py.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sh_blocks(text: str, start: str, end: str) -> list[str]:
    section = text[text.index(start): text.index(end, text.index(start))]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_readme_and_guide_have_the_same_command_blocks():
    readme = _sh_blocks((ROOT / "README.md").read_text(), "## Deploying with Postfix", "\n## ")
    guide = _sh_blocks((ROOT / "docs" / "postfix.md").read_text(), "## Deployment 1", "\n## ")
    assert len(readme) == 2 and readme == guide[:2]
    assert "make deb\napt-get install -y ./postdesk_*_amd64.deb\n" in readme[0]
    assert "gcc python3-dev python3-venv libmilter-dev" in readme[1]


def test_no_sudo_no_useradd_no_usr_local_in_units():
    for path in [ROOT / "README.md", ROOT / "docs" / "postfix.md", *sorted((ROOT / "contrib" / "postfix").iterdir())]:
        text = path.read_text()
        assert not re.search(r"\bsudo\b", text), path
        assert "useradd" not in text, path
        assert 'socket_group = "postfix"' not in text.replace('Do not set\n  `socket_group = "postfix"`', ""), path
    for unit in (ROOT / "contrib" / "postfix").glob("*.service"):
        text = unit.read_text()
        assert "/usr/local/bin" not in text
        assert re.search(r"^ExecStart=/usr/bin/postdesk \w+", text, re.M), unit
        assert "SyslogFacility=mail" in text and "SyslogIdentifier=postdesk/" in text
        codes = re.search(r"^RestartPreventExitStatus=(.*)$", text, re.M).group(1).split()
        assert {"64", "65", "78"} <= set(codes), unit
