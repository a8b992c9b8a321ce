"""The words of every mail the notifier writes, from template files people edit.

A template set is a directory of ``LANG/KIND.PART`` files:

- ``KIND``: ``ack`` (acknowledgement to the customer), ``alert`` (to the
  team), ``update`` (to customers), ``reminder`` (a pending ticket's one
  reminder to the customer), ``refusal`` (to a staff member whose command
  was not done), ``bounce-alert`` (to the owner or team: our mail bounced);
- ``PART``: ``subject`` (one line), ``txt`` (the text/plain body), ``html``
  (the text/html body, used when an action carries HTML; optional: without
  it the mail is text only).

The shipped sets (``postdesk/templates/en``, ``postdesk/templates/de``)
are package data.  ``[templates] directory`` and a department's
``templates`` key name directories that override them file by file.  The
file used for one mail is the first that exists, languages outermost:
for each language of the mail's chain, the department's directory, then
``[templates] directory``, then the shipped set.  The chain of a mail to
a customer is the ticket's language (from the customer's first mail), the
department's ``language``, ``[templates] language``, then ``en``; a team
alert goes in the staff's language, so its chain starts at the
department's (so do the refusal and the bounce alert).  ``pt-br`` also
tries ``pt``.

Templates are Jinja2 in a ``SandboxedEnvironment`` (a template reads the
values it is given, and cannot call into Python to do anything else),
with ``StrictUndefined`` (a misspelt name is an error, not an empty
string) and autoescaping for ``.html`` (text from mail cannot become
markup).  Every file is compiled and rendered with sample data at start-up
(``load``, used by ``postdesk check`` and by the notifier before its first
pass), so a broken template stops start-up with its file and line, never
a mail at send time.  Files are read once: restart the notifier after
editing (``postdesk check`` first).  Should a template still fail at send
time on data the samples did not cover, the shipped template of the same
language is used instead and the failure logged.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from postdesk.config import Config, Department, language_tag

log = logging.getLogger("postdesk.notifier")

SHIPPED = Path(__file__).resolve().parent.parent / "templates"
KINDS = ("ack", "alert", "update", "reminder", "refusal", "bounce-alert")
STAFF_KINDS = frozenset({"alert", "refusal", "bounce-alert"})  # in the staff's language, not the ticket's
PARTS = ("subject", "txt", "html")
REQUIRED = ("subject", "txt")  # per kind, in the shipped English set; html is optional
FALLBACK = "en"
_NAME = re.compile(r"^(?P<kind>[a-z-]+)\.(?P<part>[a-z]+)$")


class TemplateProblem(Exception):
    """One or more templates cannot be used; ``problems`` are "file:line: what" lines."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def when(value: datetime) -> str:
    """The ``when`` filter: a time as mail shows it (UTC, to the minute)."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


def size(n: int) -> str:
    """The ``size`` filter: bytes for people (``2.0 KB``)."""
    value = float(n)
    for unit in ("bytes", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{n} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


class _Files(BaseLoader):
    """Loads a template by its absolute path (names are resolved by ``Templates``)."""

    def get_source(self, environment, template: str):
        path = Path(template)
        return path.read_text(encoding="utf-8"), str(path), lambda: True


def _environment(html: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=_Files(),
        undefined=StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["size"] = size
    return env


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None  # None: no html template in the chain (or not asked for)


@dataclass
class Templates:
    """Every template file of the configured directories, compiled and tried.

    Build with ``load(config)``; ``render`` picks the files for one mail.
    """

    directory: str  # [templates] directory
    language: str  # [templates] language
    compiled: dict[Path, Template] = field(default_factory=dict)  # file -> template
    languages: set[str] = field(default_factory=set)

    def directories(self, department: Department) -> list[Path]:
        dirs = [department.templates, self.directory, str(SHIPPED)]
        out: list[Path] = []
        for d in dirs:
            if d and Path(d) not in out:
                out.append(Path(d))
        return out

    def chain(self, department: Department, language: str, staff: bool) -> list[str]:
        """Languages to try, most wanted first (see the module docstring)."""
        wanted = [] if staff else [language]
        wanted += [department.language, self.language, FALLBACK]
        out: list[str] = []
        for lang in wanted:
            lang = language_tag(lang)
            for tag in (lang, lang.split("-", 1)[0]):
                if tag and tag in self.languages and tag not in out:
                    out.append(tag)
        return out

    def find(self, department: Department, language: str, kind: str, part: str, staff: bool = False) -> Path | None:
        for lang in self.chain(department, language, staff):
            for d in self.directories(department):
                path = d / lang / f"{kind}.{part}"
                if path in self.compiled:
                    return path
        return None

    def render(self, kind: str, context: Mapping[str, Any], department: Department, language: str, html: bool) -> Rendered:
        """Subject, text and (when ``html`` and a template exists) HTML of one mail."""
        staff = kind in STAFF_KINDS
        out: dict[str, str | None] = {}
        for part in PARTS:
            if part == "html" and not html:
                out[part] = None
                continue
            path = self.find(department, language, kind, part, staff)
            if path is None:
                out[part] = None
                continue
            try:
                out[part] = self.compiled[path].render(context)
            except Exception as e:
                # Start-up rendered every file with sample data; what is left
                # is data the samples did not cover.  The mail still goes, in
                # the shipped words of the same language.
                shipped = SHIPPED / path.parent.name / path.name
                if shipped not in self.compiled:
                    shipped = SHIPPED / FALLBACK / path.name
                log.error("template %s failed (%s), using %s", where(e, path), e, shipped)
                out[part] = self.compiled[shipped].render(context) if shipped in self.compiled else None
        return Rendered(subject=out["subject"] or "", text=out["txt"] or "", html=out["html"])


def where(error: BaseException, path: Path) -> str:
    """``file:line`` of an error in a template (a syntax error knows its
    line; a render error's line is in the traceback Jinja rewrites to
    point at the template)."""
    if isinstance(error, TemplateSyntaxError):
        return f"{error.filename or path}:{error.lineno}"
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    return f"{path}:{line}" if line else str(path)


def _files(directory: Path) -> Iterable[tuple[str, Path]]:
    """(language, file) for every file of a template directory."""
    if not directory.is_dir():
        return
    for lang_dir in sorted(directory.iterdir()):
        if lang_dir.is_dir():
            for f in sorted(lang_dir.iterdir()):
                yield lang_dir.name, f


def load(config: Config, sample: Mapping[str, Mapping[str, Any]] | None = None) -> Templates:
    """Compile every template file of every configured directory and render
    each with sample data; ``TemplateProblem`` names each broken one."""
    from postdesk.notifier.samples import samples

    contexts = sample or samples()
    templates = Templates(config.templates.directory, config.templates.language)
    problems: list[str] = []
    envs = {False: _environment(False), True: _environment(True)}
    directories: list[Path] = []
    for d in [*(d.templates for d in config.departments), config.templates.directory, str(SHIPPED)]:
        if d and Path(d) not in directories:
            directories.append(Path(d))
    for directory in directories:
        if not directory.is_dir():
            problems.append(f"{directory}: no such template directory")
            continue
        for lang, path in _files(directory):
            m = _NAME.match(path.name)
            if language_tag(lang) != lang or not m or m["kind"] not in KINDS or m["part"] not in PARTS:
                problems.append(f"{path}: not a template (expected LANG/KIND.PART: KIND one of {', '.join(KINDS)}, PART one of {', '.join(PARTS)})")
                continue
            try:
                template = envs[m["part"] == "html"].get_template(str(path))
                for context in contexts[m["kind"]]:
                    template.render(context)
            except (TemplateError, UnicodeDecodeError, OSError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as e:
                problems.append(f"{where(e, path)}: {type(e).__name__}: {e}")
                continue
            templates.compiled[path] = template
            templates.languages.add(lang)
    for kind in KINDS:
        for part in REQUIRED:
            if SHIPPED / FALLBACK / f"{kind}.{part}" not in templates.compiled:
                problems.append(f"{SHIPPED / FALLBACK / f'{kind}.{part}'}: the shipped template is missing or broken")
    if problems:
        raise TemplateProblem(problems)
    return templates


_cache: dict[tuple, Templates] = {}


def for_config(config: Config) -> Templates:
    """The loaded templates of ``config``: loaded once per process for the
    same directories and languages (the notifier loads them at start-up)."""
    key = (config.templates.directory, config.templates.language, tuple((d.language, d.templates) for d in config.departments))
    cached = _cache.get(key)
    if cached is None:
        cached = _cache[key] = load(config)
    return cached
