"""Load and validate postdesk's TOML configuration.

Every key and its default is declared once, in ``SCHEMA`` below; the README
and ``postdesk config show`` are generated from the same table, so the docs
cannot drift from the code.  A bad key or value raises ``ConfigError`` naming
the key; the CLI turns that into exit 78 (EX_CONFIG), the sysexits code
Postfix and systemd both understand as "fix the configuration".
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = "/etc/postdesk/postdesk.toml"
ENV_VAR = "POSTDESK_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


# --- validators -------------------------------------------------------------
# Each takes (key, value) and returns the normalised value or raises.


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _int(minimum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
        return value

    return check


def _number(minimum: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
        return float(value)

    return check


def _address(key: str, value: Any) -> str:
    value = _str(key, value).strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value) or "<" in value:
        raise ConfigError(f"{key}: {value!r} is not a mail address (expected local@domain)")
    return value.lower()


def _addresses(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of addresses, got {value!r}")
    return tuple(_address(f"{key}[{i}]", v) for i, v in enumerate(value))


def _staff_patterns(key: str, value: Any) -> tuple[str, ...]:
    """Addresses or ``@domain`` entries."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of addresses or @domains, got {value!r}")
    out = []
    for i, v in enumerate(value):
        v = _str(f"{key}[{i}]", v).strip().lower()
        if v.startswith("@"):
            if len(v) < 2 or "@" in v[1:] or any(c.isspace() for c in v):
                raise ConfigError(f"{key}[{i}]: {v!r} is not an @domain")
            out.append(v)
        else:
            out.append(_address(f"{key}[{i}]", v))
    return tuple(out)


def _networks(key: str, value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of networks, got {value!r}")
    out = []
    for i, v in enumerate(value):
        try:
            out.append(ipaddress.ip_network(_str(f"{key}[{i}]", v), strict=False))
        except ValueError as e:
            raise ConfigError(f"{key}[{i}]: {e}") from None
    return tuple(out)


def _tag(key: str, value: Any) -> str:
    value = _str(key, value)
    if not value or len(value) > 16 or any(c.isspace() or c in "[]" for c in value):
        raise ConfigError(f"{key}: {value!r} must be 1-16 characters without spaces or brackets")
    return value


def _store_url(key: str, value: Any) -> str:
    value = _str(key, value)
    if not (value.startswith("sqlite:") or value.startswith("postgresql")):
        raise ConfigError(f"{key}: {value!r}: expected sqlite:///PATH or postgresql+psycopg://...")
    return value


# scheme://user:password@host/db?query, the user holding no ":" or "/"
# (SQLAlchemy's URL grammar).  Up to the last "@" before the query: a
# password holding a stray "@" or "/" is hidden whole, never in part.
_URL_PASSWORD = re.compile(r"^([\w+.-]+://[^:/@]*):[^?]*@")


def redact_url(url: str) -> str:
    """A store URL fit for a log line or the terminal: its password is ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", url)


def _socket(key: str, value: Any) -> str:
    value = _str(key, value)
    if not (value.startswith("unix:") or value.startswith("inet:") or value.startswith("inet6:") or value.startswith("local:")):
        raise ConfigError(f"{key}: {value!r}: expected unix:/path or inet:port@host")
    return value


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        value = _str(key, value)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r}: expected one of {', '.join(choices)}")
        return value

    return check


def _hostport(key: str, value: Any) -> str:
    value = _str(key, value)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}: {value!r}: expected host:port")
    return value


def _log_target(key: str, value: Any) -> str:
    value = _str(key, value).strip()
    if value in ("auto", "syslog", "stderr") or (value.startswith("file:/") and len(value) > 6):
        return value
    raise ConfigError(f"{key}: {value!r}: expected auto, syslog, stderr or file:/absolute/path")


def _mode(key: str, value: Any) -> int:
    value = _str(key, value)
    try:
        mode = int(value, 8)
    except ValueError:
        raise ConfigError(f"{key}: {value!r}: expected an octal mode such as \"0660\"") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"{key}: {value!r}: expected an octal mode such as \"0660\"")
    return mode


def _logins(key: str, value: Any) -> dict[str, str]:
    """A table of SASL login -> staff address (``{ bob = "bob@example.com" }``)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table of login = \"address\", got {value!r}")
    out = {}
    for login, address in value.items():
        login = str(login).strip().lower()
        if not login or any(c.isspace() for c in login):
            raise ConfigError(f"{key}: {login!r} is not a SASL login")
        out[login] = _address(f"{key}.{login}", address)
    return out


def _domain(key: str, value: Any) -> str:
    value = _str(key, value).strip().lower().lstrip("@")
    if value and (any(c.isspace() or c in "@<>" for c in value) or "." not in value):
        raise ConfigError(f"{key}: {value!r} is not a domain")
    return value


def _nameservers(key: str, value: Any) -> tuple[str, ...]:
    """``"IP"`` or ``"IP:PORT"`` (``"[v6]:PORT"`` for IPv6 with a port)."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of \"IP\" or \"IP:PORT\", got {value!r}")
    out = []
    for i, v in enumerate(value):
        v = _str(f"{key}[{i}]", v).strip()
        host, port = v, "53"
        if v.startswith("["):
            host, _, rest = v[1:].partition("]")
            port = rest.removeprefix(":") or "53"
        elif v.count(":") == 1:
            host, port = v.split(":")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{key}[{i}]: {v!r} is not an IP address (expected \"IP\" or \"IP:PORT\")") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{key}[{i}]: {v!r}: bad port")
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return tuple(out)


def _listen(key: str, value: Any) -> str:
    """``unix:/absolute/path`` or ``HOST:PORT`` (``[v6]:PORT`` for IPv6)."""
    value = _str(key, value).strip()
    if value.startswith("unix:"):
        if not value[5:].startswith("/"):
            raise ConfigError(f"{key}: {value!r}: expected unix:/absolute/path or HOST:PORT")
        return value
    return _hostport(key, value)


def _phrases(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of words or phrases, got {value!r}")
    out = []
    for i, v in enumerate(value):
        v = " ".join(_str(f"{key}[{i}]", v).lower().split())
        if not v:
            raise ConfigError(f"{key}[{i}]: empty phrase")
        out.append(v)
    return tuple(out)


_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")


def language_tag(value: object) -> str:
    """``value`` as a language tag the way templates are filed (``en``, ``de``,
    ``pt-br``: lower case, "_" read as "-"), or "" when it is none.  The one
    test for the config, Content-Language and the template directories."""
    tag = str(value or "").strip().lower().replace("_", "-")
    return tag if _LANGUAGE.fullmatch(tag) else ""


def _language(key: str, value: Any) -> str:
    tag = language_tag(_str(key, value))
    if not tag:
        raise ConfigError(f"{key}: {str(value).strip().lower()!r} is not a language tag (expected e.g. \"en\", \"de\" or \"pt-br\")")
    return tag


def _directory(key: str, value: Any) -> str:
    value = _str(key, value).strip()
    if value and not value.startswith("/"):
        raise ConfigError(f"{key}: {value!r}: expected an absolute path (or \"\" for none)")
    return value


def _level(key: str, value: Any) -> str:
    return _choice("DEBUG", "INFO", "WARNING", "ERROR")(key, _str(key, value).upper())


# --- the schema: section -> key -> (default, validator, help) ----------------

SCHEMA: dict[str, dict[str, tuple[Any, Callable[[str, Any], Any], str]]] = {
    "organization": {
        "name": ("Example Inc", _str, "Display name on every mail postdesk sends"),
        "system_addresses": (["support@example.com"], _addresses, "Mail to these addresses becomes tickets"),
        "reply_to": ("support@example.com", _address, "From: and Reply-To: of everything postdesk sends"),
        "team": (["team@example.com"], _addresses, "Gets new-ticket alerts and customer replies"),
        "staff": (["@example.com"], _staff_patterns, "Staff addresses or @domains (trusted senders only)"),
        "status_change_emails": (True, _bool, "Tell customers when a ticket's status changes"),
        "tag": ("#", _tag, "Subject tag prefix: [#1042]"),
        "first_ticket_number": (1000, _int(1), "Number of the first ticket"),
    },
    "store": {
        "url": ("sqlite:////var/lib/postdesk/postdesk.db", _store_url, "SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://..."),
        "attachments": ("/var/lib/postdesk/attachments", _str, "Directory for attachment files (by content hash)"),
        "busy_timeout": (10.0, _number(0), "Seconds to wait for a locked database before a temporary failure"),
        "blobs": (
            "auto",
            _choice("auto", "database", "directory"),
            "Where attachment bytes live: database (every host reads them), directory (one host), auto (database on PostgreSQL, directory on SQLite)",
        ),
    },
    "milter": {
        "socket": ("unix:/var/spool/postfix/postdesk/milter.sock", _socket, "Where the milter listens (unix:PATH or inet:PORT@HOST)"),
        "socket_mode": ("0660", _mode, "Permissions of a unix socket, so Postfix can connect"),
        "socket_group": ("", _str, "Group of a unix socket (empty: leave as is)"),
        "deliver": ("pass", _choice("pass", "discard"), "pass: keep the tagged support copy; discard: drop it"),
        "timeout": (600, _int(1), "libmilter I/O timeout in seconds"),
        "spool_memory": (1048576, _int(0), "Bytes of a message held in memory before spooling to a temp file"),
    },
    "notifier": {
        "smtp": ("127.0.0.1:25", _hostport, "SMTP server postdesk submits its mail to"),
        "starttls": (False, _bool, "Use STARTTLS to the SMTP server"),
        "username": ("", _str, "SMTP AUTH user (empty: no AUTH)"),
        "password_file": ("", _str, "File holding the SMTP AUTH password"),
        "quiet_period": (120.0, _number(0), "Seconds without change before a customer update goes"),
        "tick": (5.0, _number(0.01), "Seconds between notifier passes"),
        "ack_limit": (3, _int(0), "Acknowledgements per sender per ack_window (0: none)"),
        "ack_window": (3600.0, _number(1), "Seconds of the acknowledgement rate window"),
        "ack_global_limit": (60, _int(0), "Acknowledgements to all senders together per ack_window (0: none)"),
        "update_limit": (10, _int(1), "Customer updates per ticket and recipient per update_window"),
        "update_window": (3600.0, _number(1), "Seconds of the customer update rate window"),
        "max_wait": (900.0, _number(0), "A customer update waits at most this long for a quiet period"),
        "lease": (300.0, _number(1), "Seconds a claimed outbox row stays claimed by one worker"),
        "retry_max_age": (432000.0, _number(1), "Give up on a temporarily failing mail after this many seconds"),
    },
    "lmtp": {
        "listen": ("unix:/var/spool/postfix/postdesk/lmtp.sock", _listen, "Where postdesk lmtp listens (unix:PATH or HOST:PORT)"),
        "socket_mode": ("0660", _mode, "Permissions of a unix socket, so Postfix can connect"),
        "socket_group": ("", _str, "Group of a unix socket (empty: leave as is)"),
    },
    "lifecycle": {
        "pending_reminder": (259200.0, _number(0), "Seconds after the last public staff action before a pending ticket's one reminder (0: none)"),
        "pending_close": (604800.0, _number(0), "Seconds after the last public staff action before a pending ticket is closed (0: never)"),
        "reopen_window": (2592000.0, _number(0), "A customer reply within this many seconds of closing reopens; later it opens a follow-up ticket"),
        "thanks_phrases": (
            ["thanks", "thank you", "thx", "many thanks", "cheers", "danke", "vielen dank", "merci", "gracias"],
            _phrases,
            "A short reply to a closed ticket holding one of these and no question does not reopen it",
        ),
        "thanks_max_chars": (200, _int(0), "Replies longer than this (new text, in characters) are never taken for a thank-you"),
        "take_on_reply": (True, _bool, "The first public reply of verified staff takes an unowned ticket"),
        "owner_alerts": (
            "owner",
            _choice("owner", "owner_and_team"),
            "Once a ticket has an owner, customer-reply alerts go to the owner only, or to the owner and the team",
        ),
    },
    "templates": {
        "directory": ("", _directory, "Directory of edited mail templates, LANG/KIND.subject|txt|html (empty: the shipped ones only)"),
        "language": ("en", _language, "Language of mail when a ticket's own is unknown or has no templates (en, de, ...)"),
    },
    "limits": {
        "max_message_bytes": (26214400, _int(1024), "Larger messages are refused with 552 5.3.4"),
        "max_attachments": (100, _int(0), "Attachments kept per message; the rest are listed, not stored"),
        "new_tickets_per_sender": (5, _int(0), "New tickets one sender may open per new_ticket_window; more get 4xx (0: no limit)"),
        "new_ticket_window": (3600.0, _number(1), "Seconds of the new-ticket rate window"),
    },
    "trust": {
        "trusted_networks": ([], _networks, "Clients here may act as staff (empty: none)"),
        "authserv_id": ("", _str, "Trust Authentication-Results only from this authserv-id (empty: none)"),
        "verify": (True, _bool, "Check SPF, DKIM and DMARC here when no trusted Authentication-Results says"),
        "ack_unauthenticated": (False, _bool, "Also acknowledge senders that can be neither authenticated nor refuted"),
        "sasl_login_domain": ("", _domain, "A SASL login without @ maps to login@this domain (empty: no mapping)"),
        "sasl_map": ({}, _logins, "Explicit SASL login -> staff address table"),
        "staff_dmarc": (False, _bool, "An aligned DMARC/DKIM pass for a staff address proves staff"),
        "spam_score_header": ("X-Spam-Score", _str, "Header with a spam filter's score (empty: ignore)"),
        "spam_score_threshold": (5.0, _number(-1000), "No acknowledgement at or above this spam score"),
    },
    "dns": {
        "nameservers": ([], _nameservers, "Resolvers as \"IP\" or \"IP:PORT\" (empty: the system resolver)"),
        "timeout": (3.0, _number(0.1), "Seconds a DNS lookup may take before it is a temperror"),
    },
    "log": {
        "level": ("INFO", _level, "Log level: DEBUG, INFO, WARNING, ERROR"),
        "target": ("auto", _log_target, "auto (syslog unless stderr is a terminal, as Postfix's daemons), syslog, stderr or file:PATH"),
        "syslog_socket": ("/dev/log", _str, "The local syslog socket (facility mail, idents postdesk/milter, postdesk/notifier, ...)"),
    },
}


@dataclass(frozen=True)
class Section:
    """Attribute access to one validated section."""

    _values: dict[str, Any] = field(repr=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class Department:
    """Where a ticket belongs: its addresses, its team and its From/Reply-To.

    The ``[organization]`` keys make the default department (``name`` "");
    each ``[[departments]]`` table adds one (README, "Departments").
    """

    name: str  # "" for the default ([organization])
    display_name: str  # the From: display name of its mail
    addresses: tuple[str, ...]  # mail to these opens its tickets
    team: tuple[str, ...]  # its alerts
    reply_to: str  # From: and Reply-To: of its mail
    language: str = ""  # its mail's default language ("": [templates] language)
    templates: str = ""  # its own template directory ("": [templates] directory)


DEPARTMENT_KEYS = ("name", "display_name", "addresses", "team", "reply_to", "language", "templates")


@dataclass(frozen=True)
class Config:
    """The effective configuration: validated values by section and key."""

    organization: Section
    store: Section
    milter: Section
    notifier: Section
    limits: Section
    trust: Section
    dns: Section
    log: Section
    lmtp: Section
    lifecycle: Section
    templates: Section
    departments: tuple[Department, ...] = ()
    source: str = "<defaults>"
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    # Convenience predicates used by the filter, the milter and the notifier.

    def is_system_address(self, address: str) -> bool:
        a = address.lower()
        return a in self.organization.system_addresses or any(a in d.addresses for d in self.departments)

    def is_own_address(self, address: str) -> bool:
        a = address.lower()
        return self.is_system_address(a) or a == self.organization.reply_to or any(a == d.reply_to for d in self.departments)

    @property
    def default_department(self) -> Department:
        org = self.organization
        return Department("", org.name, org.system_addresses, org.team, org.reply_to)

    def department(self, name: str | None) -> Department:
        """The department called ``name``; the default for "" or a name no
        longer configured (a ticket keeps its department's name when the
        config drops it: its mail then goes out as the default's)."""
        for d in self.departments:
            if name and d.name == name:
                return d
        return self.default_department

    def department_for(self, recipients: Iterable[str]) -> Department:
        """The department of a message sent to ``recipients``.

        A configured department wins over the default ([organization]
        addresses); among departments, the one listed first in the config
        file wins, whatever the order of the recipients (README,
        "Departments").
        """
        wanted = {r.lower() for r in recipients}
        for d in self.departments:
            if wanted.intersection(d.addresses):
                return d
        return self.default_department

    def matches_staff(self, address: str) -> bool:
        a = address.lower()
        for pattern in self.organization.staff:
            if pattern.startswith("@"):
                if a.endswith(pattern):
                    return True
            elif a == pattern:
                return True
        return False

    def is_trusted_client(self, ip: str | None) -> bool:
        if not ip:
            return False
        try:
            addr = ipaddress.ip_address(ip.strip("[]").removeprefix("IPv6:"))
        except ValueError:
            return False
        return any(addr in net for net in self.trust.trusted_networks)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """The effective values, in TOML-friendly types (for `config show`)."""
        out: dict[str, dict[str, Any]] = {}
        for section in SCHEMA:
            values = getattr(self, section)._values
            out[section] = {}
            for key, value in values.items():
                if isinstance(value, tuple):
                    value = [str(v) for v in value]
                elif isinstance(value, dict):
                    value = dict(value)
                elif key == "socket_mode":
                    value = f"{value:04o}"
                out[section][key] = value
        if self.departments:
            out["departments"] = [  # type: ignore[assignment]
                {
                    "name": d.name,
                    "display_name": d.display_name,
                    "addresses": list(d.addresses),
                    "team": list(d.team),
                    "reply_to": d.reply_to,
                    "language": d.language,
                    "templates": d.templates,
                }
                for d in self.departments
            ]
        return out


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate ``data`` (parsed TOML) against SCHEMA, filling in defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table at top level")
    unknown = set(data) - set(SCHEMA) - {"departments"}
    if unknown:
        raise ConfigError(f"unknown section [{sorted(unknown)[0]}] (known: {', '.join(SCHEMA)})")
    sections = {}
    for name, keys in SCHEMA.items():
        given = data.get(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{name}]: expected a table")
        extra = set(given) - set(keys)
        if extra:
            raise ConfigError(f"{name}.{sorted(extra)[0]}: unknown key (known: {', '.join(keys)})")
        values = {}
        for key, (default, check, _help) in keys.items():
            values[key] = check(f"{name}.{key}", given.get(key, default))
        sections[name] = Section(values)
    departments = _departments(data.get("departments", []), sections["organization"])
    config = Config(**sections, departments=departments, source=source, raw=data)
    _check_consistency(config)
    return config


def _departments(value: Any, org: Section) -> tuple[Department, ...]:
    """The ``[[departments]]`` tables, validated; team and reply_to default
    to the organization's, the display name to the organization's name."""
    if not isinstance(value, list):
        raise ConfigError("departments: expected [[departments]] tables")
    out: list[Department] = []
    seen_addresses: dict[str, str] = {a: "[organization] system_addresses" for a in org.system_addresses}
    for i, table in enumerate(value):
        where = f"departments[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        extra = set(table) - set(DEPARTMENT_KEYS)
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}: unknown key (known: {', '.join(DEPARTMENT_KEYS)})")
        name = _str(f"{where}.name", table.get("name", "")).strip()
        if not name or len(name) > 64 or any(c in name for c in "\r\n\t"):
            raise ConfigError(f"{where}.name: a name of 1-64 characters is needed")
        where = f"departments[{name}]"
        if any(d.name.lower() == name.lower() for d in out):
            raise ConfigError(f"{where}: the name is used twice")
        addresses = _addresses(f"{where}.addresses", table.get("addresses", []))
        if not addresses:
            raise ConfigError(f"{where}.addresses: at least one address is needed")
        for a in addresses:
            if a in seen_addresses:
                raise ConfigError(f"{where}.addresses: {a} is already in {seen_addresses[a]}")
            seen_addresses[a] = f"departments[{name}]"
        team = _addresses(f"{where}.team", table["team"]) if "team" in table else org.team
        reply_to = _address(f"{where}.reply_to", table["reply_to"]) if "reply_to" in table else addresses[0]
        display = _str(f"{where}.display_name", table.get("display_name", org.name))
        # "" (as `config show` writes it): the [templates] language.
        language = _language(f"{where}.language", table["language"]) if table.get("language", "") != "" else ""
        templates = _directory(f"{where}.templates", table.get("templates", ""))
        out.append(Department(name, display, addresses, team, reply_to, language, templates))
    return tuple(out)


def _check_consistency(config: Config) -> None:
    if not config.organization.system_addresses:
        raise ConfigError("organization.system_addresses: at least one address is needed")


def default_path(explicit: str | os.PathLike | None = None) -> Path:
    """--config wins, then $POSTDESK_CONFIG, then /etc/postdesk/postdesk.toml."""
    return Path(explicit or os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the config file (see ``default_path``)."""
    p = default_path(path)
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file (use --config FILE or set ${ENV_VAR})") from None
    except PermissionError:
        raise ConfigError(f"{p}: permission denied") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: {e}") from None
    return from_dict(data, source=str(p))


def defaults() -> Config:
    return from_dict({}, source="<defaults>")
