"""Mail templates: golden files per kind and language, the choice of
language and directory, and broken templates stopped at start-up.

Golden files: tests/data/golden/LANG/KIND-N.{subject,txt,html}, the
sample jobs of ``postdesk.notifier.samples`` rendered.  After changing a
shipped template on purpose: ``POSTDESK_UPDATE_GOLDEN=1 pytest
tests/test_notifier_templates.py`` and read the diff.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest

from postdesk.notifier import templates as tmpl
from postdesk.notifier.compose import render
from postdesk.notifier.samples import jobs
from postdesk.notifier.worker import run as run_notifier
from postdesk.outcomes import EX_CONFIG

GOLDEN = Path(__file__).parent / "data" / "golden"
UPDATE = os.environ.get("POSTDESK_UPDATE_GOLDEN") == "1"
CASES = [(lang, kind, i) for lang in ("en", "de") for kind, js in jobs().items() for i in range(len(js))]


@pytest.mark.parametrize("lang, kind, i", CASES)
def test_golden(config, lang, kind, i):
    job = dataclasses.replace(jobs()[kind][i], language=lang)
    cfg = dataclasses.replace(config, templates=tmpl_section(config, language=lang))  # alerts follow the configured language
    out = render(job, cfg, html=True)
    got = {"subject": out.subject, "txt": out.text, "html": out.html}
    assert (out.html is None) == (kind not in ("alert", "update"))  # HTML only where actions' HTML goes
    for part, text in got.items():
        if text is None:
            continue
        path = GOLDEN / lang / f"{kind}-{i}.{part}"
        if UPDATE:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8"), f"{path} differs"


def tmpl_section(config, **values):
    from postdesk.config import Section

    return Section({**config.templates._values, **values})


def test_german_ticket_gets_german_mail_and_unknown_language_falls_back(config):
    job = jobs()["ack"][0]
    assert "wir haben Ihre Nachricht erhalten" in render(dataclasses.replace(job, language="de"), config).text
    assert "we have received your message" in render(dataclasses.replace(job, language="fr"), config).text
    # A regional tag uses its language's set.
    assert "Guten Tag Jane Doe," in render(dataclasses.replace(job, language="de-at"), config).text


def test_alert_goes_in_the_staff_language_not_the_customers(make_config):
    cfg = make_config(templates={"language": "de"})
    alert = dataclasses.replace(jobs()["alert"][0], language="en")
    assert "Neues Ticket [#1042]" in render(alert, cfg).text
    ack = dataclasses.replace(jobs()["ack"][0], language="en")
    assert "we have received" in render(ack, cfg).text


def test_department_language_and_directory(make_config, tmp_path):
    own = tmp_path / "billing"
    (own / "en").mkdir(parents=True)
    (own / "en" / "ack.txt").write_text("Billing got it: {{ tag }}\n")
    from postdesk.config import from_dict

    base = make_config()
    cfg = from_dict(
        {
            **base.raw,
            "departments": [
                {"name": "Billing", "addresses": ["billing@example.com"], "language": "de"},
                {"name": "Sales", "addresses": ["sales@example.com"], "templates": str(own)},
            ],
        }
    )
    job = jobs()["ack"][0]
    assert "wir haben Ihre Nachricht" in render(dataclasses.replace(job, department="Billing"), cfg).text
    text = render(dataclasses.replace(job, department="Sales"), cfg).text
    assert "Billing got it: [#1042]" in text
    # File by file: the subject still comes from the shipped set.
    assert render(dataclasses.replace(job, department="Sales"), cfg).subject.startswith("[#1042] Printer on fire")
    assert "we have received" in render(job, cfg).text  # the default department is untouched


def test_override_directory_wins_file_by_file_and_keeps_the_tag(make_config, tmp_path):
    (tmp_path / "t" / "de").mkdir(parents=True)
    (tmp_path / "t" / "de" / "update.subject").write_text("Neuigkeiten zu Ihrer Anfrage\n")
    cfg = make_config(templates={"directory": str(tmp_path / "t")})
    out = render(dataclasses.replace(jobs()["update"][0], language="de"), cfg)
    # The tag is what threads a reply: put back when a template leaves it out.
    from datetime import datetime

    from postdesk.notifier.compose import compose

    mail = compose(dataclasses.replace(jobs()["update"][0], language="de"), cfg, b"k" * 32, datetime(2026, 1, 2), lambda s: b"x")
    assert out.subject.strip() == "Neuigkeiten zu Ihrer Anfrage"
    assert b"Subject: [#1042] Neuigkeiten zu Ihrer Anfrage" in mail.data
    assert "Ticket [#1042]" in out.text  # the body still shipped German


def test_html_template_escapes_mail_data(config):
    job = dataclasses.replace(jobs()["update"][1], subject="<script>alert(1)</script>")
    html = render(job, config, html=True).html or ""
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize(
    "name, source, expect",
    [
        ("ack.txt", "Hello\n{% if x %}\nunclosed\n", ":3: TemplateSyntaxError"),
        ("ack.txt", "Hello\n\n{{ recipient_nme }}\n", ":3: UndefinedError"),
        ("update.html", "{{ ''.__class__.__mro__[1].__subclasses__() }}\n", ":1: SecurityError"),
        ("ack.text", "x", "not a template"),
        ("survey.txt", "x", "not a template"),
    ],
)
def test_broken_template_is_named_with_file_and_line(make_config, tmp_path, name, source, expect):
    (tmp_path / "t" / "de").mkdir(parents=True)
    path = tmp_path / "t" / "de" / name
    path.write_text(source)
    cfg = make_config(templates={"directory": str(tmp_path / "t")})
    with pytest.raises(tmpl.TemplateProblem) as e:
        tmpl.load(cfg)
    assert str(path) in e.value.problems[0] and expect in e.value.problems[0]


def test_notifier_refuses_to_start_on_a_broken_template(make_config, tmp_path, caplog):
    (tmp_path / "t" / "en").mkdir(parents=True)
    (tmp_path / "t" / "en" / "alert.txt").write_text("{{ entries[0].nope }}\n")
    cfg = make_config(templates={"directory": str(tmp_path / "t")})

    class NoStore:  # never reached: the templates stop start-up first
        def __getattr__(self, name):
            raise AssertionError("the store was used")

    with caplog.at_level(logging.ERROR, logger="postdesk.notifier"):
        assert run_notifier(cfg, once=True, store=NoStore()) == EX_CONFIG
    assert f"{tmp_path / 't' / 'en' / 'alert.txt'}:1" in caplog.text


def test_check_reports_templates(make_config, tmp_path):
    import io

    from postdesk import check

    (tmp_path / "t" / "de").mkdir(parents=True)
    (tmp_path / "t" / "de" / "ack.txt").write_text("{% for %}\n")
    out = io.StringIO()
    skip = set(check.STEPS) - {"templates"}
    assert check.run(make_config(templates={"directory": str(tmp_path / "t")}), skip=skip, out=out) == EX_CONFIG
    assert f"problem: template {tmp_path / 't' / 'de' / 'ack.txt'}:1" in out.getvalue()
    out = io.StringIO()
    assert check.run(make_config(), skip=skip, out=out) == 0
    assert "mail templates render (languages: de, en)" in out.getvalue()


def test_missing_template_directory_is_a_problem(make_config, tmp_path):
    with pytest.raises(tmpl.TemplateProblem, match="no such template directory"):
        tmpl.load(make_config(templates={"directory": str(tmp_path / "missing")}))


@pytest.mark.parametrize("bad", ["english", "EN_us_x", "d"])
def test_bad_language_is_a_config_error(make_config, bad):
    from postdesk.config import ConfigError

    with pytest.raises(ConfigError, match="templates.language"):
        make_config(templates={"language": bad})


def test_a_template_failing_at_send_time_falls_back_to_the_shipped_one(make_config, tmp_path, caplog):
    (tmp_path / "t" / "de").mkdir(parents=True)
    path = tmp_path / "t" / "de" / "ack.txt"
    path.write_text('Eigener Text\n{% if subject == "boom" %}{{ nope }}{% endif %}\n')  # the samples never say "boom"
    cfg = make_config(templates={"directory": str(tmp_path / "t")})
    job = dataclasses.replace(jobs()["ack"][0], language="de")
    assert "Eigener Text" in render(job, cfg).text
    with caplog.at_level(logging.ERROR, logger="postdesk.notifier"):
        text = render(dataclasses.replace(job, subject="boom"), cfg).text
    assert "wir haben Ihre Nachricht erhalten" in text  # the shipped German words
    assert f"{path}:2" in caplog.text


@pytest.mark.parametrize("key, value, message", [("language", "Deutsch", "departments[Billing].language"), ("templates", "relative/dir", "departments[Billing].templates")])
def test_bad_department_template_keys_are_config_errors(key, value, message):
    from postdesk.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        from_dict({"departments": [{"name": "Billing", "addresses": ["billing@example.com"], key: value}]})
