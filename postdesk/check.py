"""``postdesk check``: tell the mail admin what is wrong, and how to fix it.

Checks, in order: the configuration (already validated when loaded), the
store (opens, schema in place, attachment directory writable), Postfix's
settings as ``postconf`` reports them (the milter in ``smtpd_milters`` with
``milter_default_action = tempfail``, or the after-queue pipe transport in
master.cf), the milter socket (answers, and smtpd's user may connect), and
DNS for the ``reply_to`` domain (MX, else A/AAAA: otherwise customers'
replies bounce).

Each problem is printed with its fix.  Exit status (sysexits, never 1):
0 all good; 78 (EX_CONFIG) when a setting must change; 69 (EX_UNAVAILABLE)
when something is down or unreachable but the settings look right.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from postdesk.config import Config
from postdesk.outcomes import EX_CONFIG, EX_OK, EX_UNAVAILABLE

CONFIG = "config"  # the fix is a setting
DOWN = "unavailable"  # the fix is to start or repair something


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, what, fix)

    def ok(self, what: str) -> None:
        self.lines.append(f"ok: {what}")

    def note(self, what: str) -> None:
        self.lines.append(f"note: {what}")

    def problem(self, kind: str, what: str, fix: str) -> None:
        self.problems.append((kind, what, fix))
        self.lines.append(f"problem: {what}\n  fix: {fix}")

    def status(self) -> int:
        kinds = {k for k, _, _ in self.problems}
        if CONFIG in kinds:
            return EX_CONFIG
        if DOWN in kinds:
            return EX_UNAVAILABLE
        return EX_OK


# -- Postfix ------------------------------------------------------------------------


def split_milters(value: str) -> list[tuple[str, dict[str, str]]]:
    """``smtpd_milters`` -> [(address, {option: value})].

    Postfix allows ``{ unix:/path, default_action = accept, ... }`` entries
    (MILTER_README "Different settings for different Milter applications").
    """
    out = []
    for m in re.finditer(r"\{([^}]*)\}|([^\s,{}]+)", value):
        if m.group(1) is not None:
            parts = [p.strip() for p in m.group(1).split(",") if p.strip()]
            if not parts:
                continue
            opts = {}
            for p in parts[1:]:
                k, _, v = p.partition("=")
                opts[k.strip()] = v.strip()
            out.append((parts[0], opts))
        else:
            out.append((m.group(2), {}))
    return out


def same_milter(ours: str, theirs: str, queue_directory: str) -> bool:
    """Do two milter addresses name the same socket?

    Postfix resolves a relative ``unix:`` path (and any path when smtpd runs
    chrooted) below its queue directory.
    """

    def norm(addr: str) -> tuple[str, str]:
        kind, _, rest = addr.partition(":")
        if kind in ("unix", "local"):
            path = rest if rest.startswith("/") else os.path.join(queue_directory, rest)
            return "unix", os.path.normpath(path)
        if kind == "inet" and "@" in rest:
            port, _, host = rest.partition("@")
            host = {"localhost": "127.0.0.1"}.get(host, host)
            return "inet", f"{host}:{port}"
        return kind, rest

    a, b = norm(ours), norm(theirs)
    if a == b:
        return True
    # A chrooted smtpd names the socket relative to the queue directory.
    return a[0] == b[0] == "unix" and a[1] == os.path.normpath(queue_directory + "/" + theirs.partition(":")[2])


def postconf(args: list[str], config_dir: str | None) -> str:
    cmd = [shutil.which("postconf") or "/usr/sbin/postconf"]
    if config_dir:
        cmd += ["-c", config_dir]
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError((r.stderr or r.stdout).strip() or f"postconf exited {r.returncode}")
    return r.stdout


def check_postfix(config: Config, report: Report, config_dir: str | None) -> None:
    if not (shutil.which("postconf") or os.path.exists("/usr/sbin/postconf")):
        report.problem(DOWN, "postconf not found: is Postfix installed here?", "install Postfix (apt-get install postfix) or run postdesk check on the mail host")
        return
    try:
        values = {}
        for line in postconf(["smtpd_milters", "milter_default_action", "queue_directory", "milter_protocol", "content_filter"], config_dir).splitlines():
            k, _, v = line.partition("=")
            values[k.strip()] = v.strip()
        master = postconf(["-M"], config_dir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        report.problem(DOWN, f"postconf failed: {e}", "fix the Postfix configuration until `postconf -n` runs cleanly")
        return
    where = f" (postconf -c {config_dir})" if config_dir else ""
    pipe = "postdesk filter" in master
    check_loopback_trust(config, values.get("content_filter", ""), report)
    ours = config.milter.socket
    attached = [(a, o) for a, o in split_milters(values.get("smtpd_milters", "")) if same_milter(ours, a, values.get("queue_directory", ""))]
    if not attached:
        if pipe:
            report.ok(f"after-queue deployment: a pipe(8) transport runs `postdesk filter`{where}; the milter is not attached")
            return
        report.problem(
            CONFIG,
            f"the milter {ours} is not in smtpd_milters{where} (now: {values.get('smtpd_milters') or 'empty'})",
            f"postconf -e 'smtpd_milters = {ours}' 'milter_default_action = tempfail' && postfix reload   (see contrib/postfix/main.cf)",
        )
        return
    report.ok(f"smtpd_milters includes {attached[0][0]}")
    milters = split_milters(values.get("smtpd_milters", ""))
    if not same_milter(ours, milters[-1][0], values.get("queue_directory", "")):
        # Milters run in order; one after us may still reject a message that
        # is already a ticket with an acknowledgement queued (backscatter).
        report.problem(
            CONFIG,
            f"the postdesk milter is not the last of smtpd_milters (last: {milters[-1][0]}): a later milter may reject mail that already became a ticket",
            f"list it last: postconf -e 'smtpd_milters = <the others>, {ours}' && postfix reload",
        )
    if pipe:
        report.problem(CONFIG, "both the milter and the `postdesk filter` pipe transport are configured: each message would be recorded by both", "use one deployment: remove the milter from smtpd_milters or the pipe transport from master.cf")
    action = attached[0][1].get("default_action") or values.get("milter_default_action", "")
    if action != "tempfail":
        report.problem(
            CONFIG,
            f"milter_default_action is {action or 'unset'}: when the milter is down Postfix would {'accept mail that is never recorded' if action == 'accept' else 'not retry'}",
            "postconf -e 'milter_default_action = tempfail' && postfix reload",
        )
    else:
        report.ok("milter_default_action = tempfail (mail waits at the sender while the milter is down)")
    try:
        if int(values.get("milter_protocol", "6")) < 6:
            report.problem(CONFIG, f"milter_protocol = {values['milter_protocol']}: the fast path needs protocol 6", "postconf -e 'milter_protocol = 6'")
    except ValueError:
        pass


def check_loopback_trust(config: Config, content_filter: str, report: Report) -> None:
    """A content filter that re-injects over loopback (amavis and friends)
    makes every message come from 127.0.0.1 unless it passes the original
    client on (XFORWARD, Postfix's FILTER_README).  With loopback in
    trusted_networks, anyone could then write as staff."""
    if not content_filter:
        return
    loopback = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    trusted = [n for n in config.trust.trusted_networks if any(n.version == lo.version and n.overlaps(lo) for lo in loopback)]
    if trusted:
        report.note(
            f"content_filter = {content_filter} and [trust] trusted_networks includes {trusted[0]}: mail the filter "
            "re-injects over loopback counts as trusted unless the filter forwards the client address (XFORWARD); "
            "without that, remove loopback from trusted_networks and have staff authenticate (SASL)"
        )


# -- the milter socket --------------------------------------------------------------


def postfix_may_connect(st: os.stat_result, user: str = "postfix") -> bool:
    """Could Postfix's smtpd (user ``postfix``) open this socket (needs write)?"""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return True  # no such user here: cannot tell
    if st.st_uid == pw.pw_uid:
        return bool(st.st_mode & stat.S_IWUSR)
    groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def check_socket(config: Config, report: Report) -> None:
    address = config.milter.socket
    kind, _, rest = address.partition(":")
    if kind in ("unix", "local"):
        try:
            st = os.stat(rest)
        except FileNotFoundError:
            report.problem(DOWN, f"no milter socket at {rest}", "start the milter: systemctl start postdesk-milter (see journalctl -u postdesk-milter)")
            return
        except PermissionError:
            report.problem(DOWN, f"cannot see {rest} (permission denied)", "run postdesk check as root or as the postdesk user")
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = rest
    elif kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        host = host or "127.0.0.1"
        s = socket.socket(socket.AF_INET6 if kind == "inet6" else socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
        st = None
        report.note("the milter uses TCP (inet:): expect about 4x lower throughput than a unix socket (delayed ACKs on libmilter's small writes)")
    else:
        report.problem(CONFIG, f"milter.socket {address}: unknown socket type", "use unix:/var/spool/postfix/postdesk/milter.sock")
        return
    s.settimeout(3)
    try:
        s.connect(target)
    except OSError as e:
        report.problem(DOWN, f"the milter socket {address} does not answer: {e}", "start the milter: systemctl start postdesk-milter; a stale socket file is removed on start")
        return
    finally:
        s.close()
    report.ok(f"the milter answers on {address}")
    if st is not None and not postfix_may_connect(st):
        report.problem(
            CONFIG,
            f"Postfix (user postfix) may not connect to {rest} (mode {stat.S_IMODE(st.st_mode):04o}, gid {st.st_gid})",
            'set [milter] socket_group = "postfix" and socket_mode = "0660", then restart postdesk-milter',
        )


# -- the store ----------------------------------------------------------------------


def check_store(config: Config, report: Report) -> None:
    from postdesk.milter.server import redact_url

    url = redact_url(config.store.url)
    try:
        from postdesk.store import Store

        store = Store.from_config(config)
    except Exception as e:
        report.problem(CONFIG, f"store {url}: {type(e).__name__}: {e}", "check [store] url")
        return
    try:
        store.secret()  # reads the settings row written by `postdesk init`
        report.ok(f"store {url} opens and is initialised")
    except Exception as e:
        text = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        if type(e).__name__ == "StoreNotInitialised" or re.search(r"no such table|UndefinedTable", text, re.I):
            report.problem(CONFIG, f"store {url} is not initialised: {text}", "run: postdesk init")
        else:
            report.problem(DOWN, f"store {url} does not open: {text}", "start the database or fix [store] url / permissions; the milter answers 451 until it opens")
    finally:
        close = getattr(store, "close", None) or getattr(store, "dispose", None)
        if callable(close):
            try:
                close()
            except Exception:
                pass
    attachments = Path(config.store.attachments)
    if not attachments.is_dir():
        report.problem(CONFIG, f"attachment directory {attachments} does not exist", "run: postdesk init (it creates it), or fix [store] attachments")
    elif not os.access(attachments, os.W_OK | os.X_OK):
        report.problem(CONFIG, f"attachment directory {attachments} is not writable by uid {os.geteuid()}", f"chown -R postdesk: {attachments}")
    else:
        report.ok(f"attachment directory {attachments} is writable")


# -- DNS ----------------------------------------------------------------------------


def check_dns(config: Config, report: Report, lifetime: float = 5.0) -> None:
    import dns.exception
    import dns.resolver

    domain = config.organization.reply_to.rpartition("@")[2]
    resolver = dns.resolver.Resolver()
    resolver.lifetime = lifetime
    try:
        answer = resolver.resolve(domain, "MX")
        hosts = sorted(str(r.exchange).rstrip(".") for r in answer)
        if hosts == [""]:
            report.problem(CONFIG, f"{domain} has a null MX (RFC 7505): replies to {config.organization.reply_to} bounce", f"publish an MX for {domain} or change organization.reply_to")
        else:
            report.ok(f"MX of {domain}: {', '.join(hosts)}")
        return
    except dns.resolver.NXDOMAIN:
        report.problem(CONFIG, f"{domain} does not exist in DNS: customers cannot reply to {config.organization.reply_to}", "change organization.reply_to to a domain you receive mail for")
        return
    except dns.resolver.NoAnswer:
        pass
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
        report.problem(DOWN, f"DNS lookup of {domain} failed: {e}", "check /etc/resolv.conf and the network; rerun postdesk check")
        return
    except dns.exception.DNSException as e:
        report.problem(DOWN, f"DNS lookup of {domain} failed: {e}", "check /etc/resolv.conf and the network")
        return
    # No MX: RFC 5321 section 5.1 falls back to the A/AAAA record.
    for rdtype in ("A", "AAAA"):
        try:
            resolver.resolve(domain, rdtype)
            report.note(f"{domain} has no MX; mail goes to its {rdtype} record (RFC 5321 5.1): consider publishing an MX")
            return
        except dns.exception.DNSException:
            continue
    report.problem(CONFIG, f"{domain} has neither MX nor A/AAAA: customers cannot reply to {config.organization.reply_to}", f"publish an MX record for {domain}")


# -- entry point --------------------------------------------------------------------


def run(config: Config, *, postfix_config: str | None = None, dns: bool = True, out=None) -> int:
    """Run every check, print the report, return 0 / 78 / 69.

    ``postfix_config`` is passed to ``postconf -c`` (default: the system
    instance, or ``$POSTDESK_POSTFIX_CONFIG``).
    """
    import sys

    out = out or sys.stdout
    postfix_config = postfix_config or os.environ.get("POSTDESK_POSTFIX_CONFIG") or None
    report = Report()
    report.ok(f"configuration {config.source} is valid")
    for step in (
        lambda: check_store(config, report),
        lambda: check_postfix(config, report, postfix_config),
        lambda: check_socket(config, report),
        lambda: check_dns(config, report) if dns else report.note("DNS check skipped"),
    ):
        try:
            step()
        except Exception as e:  # a check must report, never crash with exit 1
            report.problem(DOWN, f"check failed unexpectedly: {type(e).__name__}: {e}", "report this as a bug in postdesk check")
    for line in report.lines:
        print(line, file=out)
    status = report.status()
    n = len(report.problems)
    print(f"{n} problem{'s' if n != 1 else ''} found" if n else "all checks passed", file=out)
    return status
