"""postdesk.testing: shipped with the package, but aiosmtpd (the ``test``
extra) is needed only by the sink, and only when it is imported."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from postdesk.testing.toml import toml_dumps

# A None entry in sys.modules makes "import aiosmtpd" fail as if it were not installed.
WITHOUT_AIOSMTPD = "import sys; sys.modules['aiosmtpd'] = None; sys.modules['aiosmtpd.controller'] = None\n"


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_AIOSMTPD + code], capture_output=True, text=True, timeout=60)


def test_postdesk_and_the_postfix_helpers_import_without_aiosmtpd():
    r = run(
        "import postdesk, postdesk.cli, postdesk.milter.server, postdesk.notifier.worker, postdesk.store\n"
        "import postdesk.testing, postdesk.testing.postfix, postdesk.testing.milter, postdesk.testing.wait, postdesk.testing.toml\n"
    )
    assert r.returncode == 0, r.stderr


def test_the_sink_without_aiosmtpd_names_the_test_extra():
    r = run("import postdesk.testing.smtp\n")
    assert r.returncode == 1
    assert "ImportError: postdesk.testing.smtp needs aiosmtpd: pip install 'postdesk[test]'" in r.stderr


def test_toml_dumps_reads_back_as_written():
    data = {
        "organization": {"name": 'Example "Inc" \\ Support', "staff": ["@example.com", "bob@example.org"], "first_ticket_number": 1000},
        "notifier": {"quiet_period": 2.5, "pipelining": False, "smtp": "127.0.0.1:25"},
        "milter": {"macros": {"i": "queue id", "auth": "x"}},
    }
    assert tomllib.loads(toml_dumps(data)) == data
