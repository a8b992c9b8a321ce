"""Config: defaults, validation errors that name the key, and the helpers."""

from __future__ import annotations

import pytest

from postdesk import config as configmod
from postdesk.config import ConfigError


def test_defaults_are_valid():
    c = configmod.defaults()
    assert c.organization.first_ticket_number == 1000
    assert c.milter.socket_mode == 0o660
    assert c.notifier.quiet_period == 120.0


@pytest.mark.parametrize(
    "data, key",
    [
        ({"organization": {"colour": "red"}}, "organization.colour"),
        ({"organisation": {}}, "organisation"),
        ({"organization": {"reply_to": "not an address"}}, "organization.reply_to"),
        ({"organization": {"system_addresses": ["ok@example.com", "bad"]}}, "organization.system_addresses[1]"),
        ({"organization": {"staff": ["@"]}}, "organization.staff[0]"),
        ({"organization": {"tag": "[x]"}}, "organization.tag"),
        ({"organization": {"first_ticket_number": 0}}, "organization.first_ticket_number"),
        ({"organization": {"status_change_emails": "yes"}}, "organization.status_change_emails"),
        ({"store": {"url": "mysql://x"}}, "store.url"),
        ({"milter": {"socket": "/tmp/x.sock"}}, "milter.socket"),
        ({"milter": {"socket_mode": "rw"}}, "milter.socket_mode"),
        ({"milter": {"deliver": "keep"}}, "milter.deliver"),
        ({"notifier": {"smtp": "localhost"}}, "notifier.smtp"),
        ({"notifier": {"quiet_period": -1}}, "notifier.quiet_period"),
        ({"trust": {"trusted_networks": ["10.0.0.0/33"]}}, "trust.trusted_networks[0]"),
        ({"log": {"level": "LOUD"}}, "log.level"),
    ],
)
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError) as e:
        configmod.from_dict(data)
    assert key in str(e.value)


def test_load_reports_missing_file_and_syntax_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        configmod.load(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[organization\nname = 1\n")
    with pytest.raises(ConfigError, match=str(bad)):
        configmod.load(bad)


def test_path_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("POSTDESK_CONFIG", str(tmp_path / "env.toml"))
    assert configmod.default_path("/x.toml").name == "x.toml"
    assert configmod.default_path(None).name == "env.toml"
    monkeypatch.delenv("POSTDESK_CONFIG")
    assert str(configmod.default_path(None)) == configmod.DEFAULT_PATH


def test_staff_and_trust_helpers(config):
    assert config.matches_staff("Bob@Example.com")
    assert not config.matches_staff("bob@example.com.evil.test")
    assert not config.matches_staff("bob@notexample.com")
    assert config.is_system_address("SUPPORT@example.com")
    assert config.is_own_address("support@example.com")
    assert config.is_trusted_client("127.0.0.1")
    assert config.is_trusted_client("IPv6:::1")
    assert not config.is_trusted_client("203.0.113.5")
    assert not config.is_trusted_client("")
    assert not config.is_trusted_client("unknown")


def test_language_tag_is_one_test_for_config_mail_and_template_directories():
    from postdesk.config import language_tag

    assert language_tag(" pt_BR ") == "pt-br" and language_tag("de") == "de"
    for bad in ("../en", "en/de", "e", "english-language-x", "", None, "en\nde"):
        assert language_tag(bad) == "", bad
