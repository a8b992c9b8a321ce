"""``postdesk check``: tell the mail admin what is wrong, and how to fix it.

The checks, each skippable with ``--skip NAME``:

- ``templates``: every mail template (shipped, ``[templates] directory``,
  departments' ``templates``) compiles and renders with sample data; a
  problem names the file and line (``postdesk.notifier.templates``).
- ``store``: the database opens and ``postdesk init`` has run; which blob
  backend keeps attachment bytes (``[store] blobs``) and whether it is
  readable.
- ``postfix``: what ``postconf`` (main.cf) and ``postconf -F``/``-P``
  (master.cf) say.  Every smtpd service must reach our socket through
  ``smtpd_milters``, resolved as Postfix will: a chrooted smtpd (master.cf
  chroot column ``y``; ``-`` means ``n`` since Postfix 3.0, master(5))
  resolves the path below ``queue_directory``, so the socket
  /var/spool/postfix/postdesk/milter.sock is written ``unix:/postdesk/milter.sock``.
  postdesk must be the last milter; ``milter_default_action`` should stay
  ``tempfail`` (Postfix's default).
- ``socket``: the milter answers (on an LMTP deployment, one where a
  transport routes mail to ``[lmtp] listen`` and no milter is attached,
  ``postdesk lmtp`` answers instead), and the user ``postfix`` may open the
  socket: it can search every parent directory and write the socket, by
  uid, by its groups in the group database, and by the groups its running
  smtpd processes actually hold (they keep the groups they started with
  until ``postfix reload``).
- ``permissions``: the service user (``--user``, default: the owner of the
  attachment directory) can write the database, the attachment directory
  and the socket directory.  Checked in a forked child that has become that
  user, so running check as root proves nothing it should not.
- ``dns``: the ``reply_to`` domain has an MX (else A/AAAA): otherwise
  customers' replies bounce.

Output: ``ok:``, ``warning:`` and ``problem:`` lines, each problem with its
``fix:``; a problem about Postfix's wiring ends with the exact ``postconf
-e`` lines for this host (``postdesk setup-postfix`` prints or applies
them).  Exit status (sysexits, never 1): 0 no problem (warnings do not
count); 78 (EX_CONFIG) a setting or a permission must change; 69
(EX_UNAVAILABLE) something is down or unreachable while the settings look
right.  ``postdesk check --skip dns`` gates a deployment.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from postdesk.cli.parser import CHECK_STEPS
from postdesk.config import Config
from postdesk.outcomes import EX_CONFIG, EX_OK, EX_UNAVAILABLE

CONFIG = "config"  # the fix is a setting or a permission
DOWN = "unavailable"  # the fix is to start or repair something
STEPS = CHECK_STEPS
GROUP_FIX = "adduser postfix {group} && postfix reload"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, what, fix)
    warnings: list[str] = field(default_factory=list)

    def ok(self, what: str) -> None:
        self.lines.append(f"ok: {what}")

    def note(self, what: str) -> None:
        self.lines.append(f"note: {what}")

    def warning(self, what: str) -> None:
        self.warnings.append(what)
        self.lines.append(f"warning: {what}")

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


# -- Postfix: what main.cf and master.cf say ------------------------------------------


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


def resolve_milter(address: str, queue_directory: str, chrooted: bool) -> tuple[str, str]:
    """Where Postfix's smtpd will connect: ("unix", host path) or ("inet", "host:port").

    smtpd runs in ``queue_directory`` (its working directory, and its root
    when chrooted): a relative path is below it, and in a chroot an absolute
    one too (MILTER_README, "Running the milter in a chroot").
    """
    kind, _, rest = address.partition(":")
    if kind in ("unix", "local"):
        if chrooted or not rest.startswith("/"):
            return "unix", os.path.normpath(queue_directory + "/" + rest)
        return "unix", os.path.normpath(rest)
    if kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        host = {"localhost": "127.0.0.1"}.get(host, host)
        return "inet", f"{host}:{port}"
    return kind, rest


def same_milter(ours: str, theirs: str, queue_directory: str, chrooted: bool = False) -> bool:
    """Does ``theirs`` (as written in main.cf) reach the socket ``ours`` (a host path)?"""
    return resolve_milter(ours, queue_directory, False) == resolve_milter(theirs, queue_directory, chrooted)


def milter_address_for(ours: str, queue_directory: str, chrooted: bool) -> str | None:
    """How to write our socket in smtpd_milters for this smtpd; None if it cannot reach it."""
    kind, path = resolve_milter(ours, queue_directory, False)
    if kind != "unix" or not chrooted:
        return ours
    q = os.path.normpath(queue_directory)
    if path.startswith(q + "/"):
        return "unix:" + path[len(q):]
    return None


def postconf(args: list[str], config_dir: str | None) -> str:
    cmd = [shutil.which("postconf") or "/usr/sbin/postconf"]
    if config_dir:
        cmd += ["-c", config_dir]
    r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError((r.stderr or r.stdout).strip() or f"postconf exited {r.returncode}")
    return r.stdout


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


@dataclass
class Smtpd:
    """One smtpd service of master.cf, as far as the milter is concerned."""

    name: str  # service/type, e.g. "smtp/inet"
    chrooted: bool
    milters: str  # its smtpd_milters (main.cf, or its own -o override)


@dataclass
class PostfixView:
    values: dict[str, str]
    services: list[Smtpd]
    pipe: bool  # a pipe(8) transport runs `postdesk filter`
    routes: str = ""  # master.cf, transport_maps and their source files: where an lmtp(8) route to us would show
    milter_attached: bool = False  # set by check_postfix

    @property
    def queue_directory(self) -> str:
        return self.values.get("queue_directory", "/var/spool/postfix")


def read_postfix(config_dir: str | None) -> PostfixView:
    names = ["smtpd_milters", "milter_default_action", "queue_directory", "milter_protocol", "content_filter", "mail_version", "mail_owner", "transport_maps"]
    values = _pairs(postconf(names, config_dir))
    fields = _pairs(postconf(["-F"], config_dir))
    overrides = _pairs(postconf(["-P"], config_dir))
    major = int((values.get("mail_version", "3").split(".") or ["3"])[0] or 3)
    services = []
    for key, command in fields.items():
        if not key.endswith("/command"):
            continue
        words = command.split()
        if not words or words[0] != "smtpd":
            continue
        name = key[: -len("/command")]
        chroot = fields.get(f"{name}/chroot", "-")
        # master(5): the chroot column's default is n since Postfix 3.0 (y before).
        chrooted = chroot == "y" or (chroot == "-" and major < 3)
        milters = overrides.get(f"{name}/smtpd_milters", values.get("smtpd_milters", ""))
        services.append(Smtpd(name, chrooted, milters))
    master = postconf(["-M"], config_dir)
    return PostfixView(values, services, "postdesk filter" in master, master + "\n" + map_texts(values.get("transport_maps", "")))


def map_texts(maps: str) -> str:
    """The transport maps as text: ``inline:{...}`` itself, and the source
    file of each ``type:/path`` map (hash:/etc/postfix/postdesk_transport
    is built from /etc/postfix/postdesk_transport)."""
    out = [maps]
    for m in re.findall(r"\b[a-z]+:(/[^\s,]+)", maps):
        try:
            out.append(Path(m).read_text(errors="replace"))
        except OSError:
            pass
    return "\n".join(out)


def lmtp_routed(config: Config, view: PostfixView) -> bool:
    """Does Postfix route mail to ``[lmtp] listen`` (a transport ``...:unix:PATH`` or ``...:inet:HOST:PORT``)?"""
    listen = config.lmtp.listen
    target = listen[len("unix:"):] if listen.startswith("unix:") else listen
    q = view.queue_directory
    spellings = {target}
    if target.startswith(q.rstrip("/") + "/"):
        spellings.add(target[len(q.rstrip("/")):])  # as a chrooted lmtp(8) writes it
    return any(re.search(rf":(unix|inet):{re.escape(t)}(\s|$|,|\}})", view.routes) for t in spellings)


def wiring_lines(config: Config, view: PostfixView) -> list[str]:
    """The ``postconf -e`` arguments that wire our milter into this host's Postfix."""
    ours = config.milter.socket
    q = view.queue_directory
    chrooted = any(s.chrooted for s in view.services)
    address = milter_address_for(ours, q, chrooted)
    if address is None:
        return []
    # Keep the other milters, in order, and drop any spelling of ours
    # (with or without the chroot): ours goes last.
    others = [
        a if not o else "{ " + ", ".join([a] + [f"{k} = {v}" for k, v in o.items()]) + " }"
        for a, o in split_milters(view.values.get("smtpd_milters", ""))
        if not (same_milter(ours, a, q, True) or same_milter(ours, a, q, False))
    ]
    lines = [f"smtpd_milters = {', '.join(others + [address])}"]
    if view.values.get("milter_default_action", "tempfail") != "tempfail":
        lines.append("milter_default_action = tempfail")
    try:
        if int(view.values.get("milter_protocol", "6")) < 6:
            lines.append("milter_protocol = 6")
    except ValueError:
        pass
    return lines


def postconf_command(lines: list[str], config_dir: str | None) -> str:
    c = f" -c {shlex.quote(config_dir)}" if config_dir else ""
    reload = f"postfix{c} reload"
    return f"postconf{c} -e " + " ".join(shlex.quote(line) for line in lines) + f" && {reload}"


def check_postfix(config: Config, report: Report, config_dir: str | None) -> PostfixView | None:
    if not (shutil.which("postconf") or os.path.exists("/usr/sbin/postconf")):
        report.problem(DOWN, "postconf not found: is Postfix installed here?", "install Postfix (apt-get install postfix) or run postdesk check on the mail host")
        return None
    try:
        view = read_postfix(config_dir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as e:
        report.problem(DOWN, f"postconf failed: {e}", "fix the Postfix configuration until `postconf -n` runs cleanly")
        return None
    where = f" (postconf -c {config_dir})" if config_dir else ""
    values, q = view.values, view.queue_directory
    check_loopback_trust(config, values.get("content_filter", ""), report)
    ours = config.milter.socket
    lines = wiring_lines(config, view)
    fix = postconf_command(lines, config_dir) if lines else ""
    if not view.services:
        report.warning(f"no smtpd service in master.cf{where}: no mail arrives over SMTP")
    lmtp = lmtp_routed(config, view)
    instance = f"; for this instance: postconf -c {shlex.quote(config_dir)} and postfix -c {shlex.quote(config_dir)}" if config_dir else ""
    attached_any = False
    for svc in view.services:
        milters = split_milters(svc.milters)
        mine = [(a, o) for a, o in milters if same_milter(ours, a, q, svc.chrooted)]
        if not mine:
            # Written with the host path while smtpd is chrooted: the classic 451 4.7.1 at CONNECT.
            host_path = [a for a, _ in milters if svc.chrooted and same_milter(ours, a, q, False)]
            if host_path:
                address = milter_address_for(ours, q, True)
                report.problem(
                    CONFIG,
                    f"{svc.name}: smtpd runs chrooted in {q} (master.cf), so Postfix looks for {host_path[0]} at "
                    f"{resolve_milter(host_path[0], q, True)[1]}, which does not exist: every mail gets 451 4.7.1",
                    f"write it relative to the chroot, {address}: {fix}",
                )
            elif svc.chrooted and milter_address_for(ours, q, True) is None:
                report.problem(
                    CONFIG,
                    f"{svc.name}: smtpd runs chrooted in {q} and cannot reach the socket {ours} outside it",
                    f'put the socket below the queue directory: [milter] socket = "unix:{q}/postdesk/milter.sock", then {postconf_command(["smtpd_milters = unix:/postdesk/milter.sock"], config_dir)}',
                )
            elif view.pipe or lmtp:
                continue
            else:
                report.problem(
                    CONFIG,
                    f"{svc.name}: the milter {ours} is not in smtpd_milters{where} (now: {svc.milters or 'empty'})",
                    fix or "add it to smtpd_milters",
                )
            continue
        attached_any = True
        report.ok(f"{svc.name}: smtpd_milters reaches {ours} as {mine[0][0]}{' (chrooted smtpd)' if svc.chrooted else ''}")
        if not same_milter(ours, milters[-1][0], q, svc.chrooted):
            # Milters run in order; one after us may still reject a message that
            # is already a ticket with an acknowledgement queued (backscatter).
            report.problem(
                CONFIG,
                f"{svc.name}: the postdesk milter is not the last of smtpd_milters (last: {milters[-1][0]}): a later milter may reject mail that already became a ticket",
                f"list it last: {fix}",
            )
        action = mine[0][1].get("default_action") or values.get("milter_default_action", "")
        if action == "tempfail":
            report.ok("milter_default_action = tempfail (mail waits at the sender while the milter is down)")
        elif action == "accept":
            report.problem(
                CONFIG,
                "milter_default_action = accept: mail that arrives while the milter is down is delivered but never recorded",
                f"postconf -e 'milter_default_action = tempfail' && postfix reload  (Postfix's default{instance}), or record such mail later with postdesk import",
            )
        else:
            report.problem(
                CONFIG,
                f"milter_default_action = {action or 'unset'}: when the milter is down Postfix would not retry",
                f"postconf -e 'milter_default_action = tempfail' && postfix reload{instance}",
            )
    if attached_any and view.pipe:
        report.problem(
            CONFIG,
            "both the milter and the `postdesk filter` pipe transport are configured: each message would be recorded by both",
            "use one deployment: remove the milter from smtpd_milters or the pipe transport from master.cf",
        )
    elif view.pipe and not attached_any:
        report.ok(f"after-queue deployment: a pipe(8) transport runs `postdesk filter`{where}; the milter is not attached")
    if attached_any and lmtp:
        report.problem(
            CONFIG,
            f"both the milter and an lmtp(8) transport to postdesk lmtp ({config.lmtp.listen}) are configured: each message would be recorded by both",
            "use one deployment: remove the milter from smtpd_milters or the postdesk-lmtp route from transport_maps",
        )
    elif lmtp and not attached_any:
        report.ok(f"after-queue deployment: lmtp(8) delivers to postdesk lmtp on {config.lmtp.listen}{where}; the milter is not attached")
    view.milter_attached = attached_any
    try:
        if int(values.get("milter_protocol", "6")) < 6:
            report.problem(CONFIG, f"milter_protocol = {values['milter_protocol']}: the fast path needs protocol 6", "postconf -e 'milter_protocol = 6'")
    except ValueError:
        pass
    return view


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
        report.warning(
            f"content_filter = {content_filter} and [trust] trusted_networks includes {trusted[0]}: mail the filter "
            "re-injects over loopback counts as trusted unless the filter forwards the client address (XFORWARD); "
            "without that, remove loopback from trusted_networks and have staff authenticate (SASL)"
        )


# -- the milter socket, as user postfix sees it ---------------------------------------


def user_groups(user: str) -> tuple[int, set[int]] | None:
    """(uid, gids) of ``user`` from the passwd and group databases."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def may(st: os.stat_result, uid: int, gids: set[int], bit: int) -> bool:
    """Would ``uid``/``gids`` get permission ``bit`` (4 r, 2 w, 1 x) on ``st``? (root always)."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def postfix_may_connect(st: os.stat_result, user: str = "postfix") -> bool:
    """Could Postfix's smtpd (user ``postfix``) open this socket (needs write)?"""
    ids = user_groups(user)
    if ids is None:
        return True  # no such user here: cannot tell
    return may(st, ids[0], ids[1], 2)


def blocking_directory(path: str, uid: int, gids: set[int]) -> str | None:
    """The first parent of ``path`` that ``uid`` cannot search, if any."""
    parent = os.path.dirname(os.path.abspath(path))
    parts = []
    while True:
        parts.append(parent)
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    for d in reversed(parts):
        try:
            if not may(os.stat(d), uid, gids, 1):
                return d
        except OSError:
            return d
    return None


def smtpd_process_groups(queue_directory: str, uid: int) -> list[tuple[int, set[int]]]:
    """(pid, groups) of the running smtpd processes of this Postfix instance.

    Children of the master whose pid is in ``queue_directory/pid/master.pid``:
    another instance on the same host is not ours to judge.
    """
    try:
        master = int(Path(queue_directory, "pid", "master.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path("/proc", entry, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Name", "").strip() != "smtpd" or int(fields.get("PPid", "0")) != master:
            continue
        if int(fields.get("Uid", "0").split()[1]) != uid:
            continue
        groups = {int(g) for g in fields.get("Groups", "").split()} | {int(fields.get("Gid", "0").split()[1])}
        out.append((int(entry), groups))
    return out


def check_socket(config: Config, report: Report, queue_directory: str | None = None) -> None:
    address = config.milter.socket
    kind, _, rest = address.partition(":")
    if kind in ("unix", "local"):
        try:
            st = os.stat(rest)
        except FileNotFoundError:
            report.problem(DOWN, f"no milter socket at {rest}", "start the milter: systemctl start postdesk-milter (see journalctl -u postdesk-milter, or /var/log/mail.log)")
            return
        except PermissionError:
            report.problem(DOWN, f"cannot see {rest} (permission denied)", "run postdesk check as root or as the postdesk user")
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = rest
    elif kind in ("inet", "inet6"):
        port, _, host = rest.partition("@")
        host = host or "127.0.0.1"
        s = socket.socket(socket.AF_INET6 if kind == "inet6" else socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
        st = None
        report.warning("the milter uses TCP (inet:): expect about 4x lower throughput than a unix socket (delayed ACKs on libmilter's small writes)")
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
    if st is None:
        return
    opened = _postfix_may_open(rest, st, report)
    if opened is not None:
        uid, group = opened
        stale = [pid for pid, groups in smtpd_process_groups(queue_directory or "/var/spool/postfix", uid)
                 if not may(st, uid, groups, 2)]
        if stale:
            report.problem(
                CONFIG,
                f"{len(stale)} running smtpd process(es) (pid {', '.join(map(str, stale[:5]))}) started before user postfix joined group {group}: they get \"Permission denied\" on the socket",
                "postfix reload",
            )


def check_lmtp_socket(config: Config, report: Report) -> None:
    """postdesk lmtp answers on ``[lmtp] listen`` with an LMTP greeting, and
    user postfix (lmtp(8)) may open a unix socket."""
    listen = config.lmtp.listen
    if listen.startswith("unix:"):
        path = listen[len("unix:"):]
        try:
            st: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            report.problem(DOWN, f"no postdesk lmtp socket at {path}", "start it: systemctl enable --now postdesk-lmtp (see journalctl -u postdesk-lmtp, or /var/log/mail.log)")
            return
        except PermissionError:
            report.problem(DOWN, f"cannot see {path} (permission denied)", "run postdesk check as root or as the postdesk user")
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = path
    else:
        host, _, port = listen.rpartition(":")
        s = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, socket.SOCK_STREAM)
        target, st, path = (host.strip("[]"), int(port)), None, ""
    s.settimeout(3)
    try:
        s.connect(target)
        greeting = s.recv(512).decode("ascii", "replace")
        s.sendall(b"QUIT\r\n")
    except OSError as e:
        report.problem(DOWN, f"postdesk lmtp does not answer on {listen}: {e}", "start it: systemctl start postdesk-lmtp; a stale socket file is removed on start")
        return
    finally:
        s.close()
    if not greeting.startswith("220"):
        report.problem(DOWN, f"{listen} answers, but not as an LMTP server: {greeting.strip()[:80]!r}", "point [lmtp] listen at a path or port of its own")
        return
    report.ok(f"postdesk lmtp answers on {listen}")
    if st is None:
        return
    _postfix_may_open(path, st, report)


def _postfix_may_open(path: str, st: os.stat_result, report: Report) -> tuple[int, str] | None:
    """Whether user postfix may reach and open the socket at ``path`` (the
    milter's and the LMTP server's alike), reported; (postfix's uid, the
    socket's group) when it may, else None."""
    ids = user_groups("postfix")
    if ids is None:
        report.warning("no user postfix on this host: cannot tell whether Postfix may open the socket")
        return None
    uid, gids = ids
    group = _group_name(st.st_gid)
    blocked = blocking_directory(path, uid, gids)
    if blocked:
        report.problem(CONFIG, f"user postfix cannot enter {blocked} on the way to {path}", f"adduser postfix {_group_name(os.stat(blocked).st_gid)} && postfix reload, or chmod o+x {blocked}")
        return None
    if not may(st, uid, gids, 2):
        report.problem(
            CONFIG,
            f"user postfix may not open {path} (mode {stat.S_IMODE(st.st_mode):04o}, group {group}) and is not in group {group}",
            # Never "socket_group = postfix": the server (user postdesk)
            # cannot chgrp its socket to a group it is not in, and would not start.
            GROUP_FIX.format(group=group),
        )
        return None
    report.ok(f"user postfix may open {path} (mode {stat.S_IMODE(st.st_mode):04o}, group {group})")
    return uid, group


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# -- the store ----------------------------------------------------------------------


def check_templates(config: Config, report: Report) -> None:
    """Every mail template compiles and renders with sample data (file:line when not)."""
    from postdesk.notifier.templates import TemplateProblem, load

    try:
        templates = load(config)
    except TemplateProblem as e:
        for problem in e.problems:
            report.problem(CONFIG, f"template {problem}", "fix the template (the notifier does not start until every template renders)")
        return
    report.ok(f"{len(templates.compiled)} mail templates render (languages: {', '.join(sorted(templates.languages))})")


def check_store(config: Config, report: Report) -> None:
    from postdesk.config import redact_url

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
        check_blobs(config, store, report)
    except Exception as e:
        text = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        if type(e).__name__ == "StoreNotInitialised" or re.search(r"no such table|UndefinedTable", text, re.I):
            report.problem(CONFIG, f"store {url} is not initialised: {text}", "run: postdesk init (as the service user: runuser -u postdesk -- postdesk init)")
        else:
            report.problem(DOWN, f"store {url} does not open: {text}", "start the database or fix [store] url / permissions; the milter answers 451 until it opens")
    finally:
        close = getattr(store, "close", None) or getattr(store, "dispose", None)
        if callable(close):
            try:
                close()
            except Exception:
                pass


def check_blobs(config: Config, store, report: Report) -> None:
    """Which blob backend holds attachment bytes ([store] blobs), and
    whether this process can read (and write) it."""
    backend = store.blobs
    how = f"[store] blobs = {config.store.blobs!r}" + (f" ({backend.name} for this store)" if config.store.blobs == "auto" else "")
    try:
        backend.check_readable()
    except Exception as e:
        text = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        fix = "run: postdesk init (it creates the attachment directory and the blob tables)"
        report.problem(CONFIG, f"attachments: {backend.describe()} is not readable ({how}): {text}", fix)
        return
    report.ok(f"attachments in {backend.describe()} ({how}), readable")
    if backend.name == "directory" and not config.store.url.startswith("sqlite"):
        report.warning(
            f"attachments are files on this host ({backend.describe()}) while the store is shared: "
            'a notifier on another host cannot send them; set [store] blobs = "database" and run postdesk blobs migrate --to database'
        )


# -- permissions, as the service user -------------------------------------------------


def service_user(config: Config, explicit: str | None) -> str:
    """``--user``, else the owner of the attachment directory (the service
    user owns its data), else whoever runs the check."""
    if explicit:
        return explicit
    for candidate in (config.store.attachments, os.path.dirname(str(config.store.attachments))):
        try:
            return pwd.getpwuid(os.stat(candidate).st_uid).pw_name
        except (OSError, KeyError):
            continue
    return pwd.getpwuid(os.geteuid()).pw_name


def access_as(user: str, wanted: list[tuple[str, int]]) -> list[bool]:
    """``os.access(path, mode)`` for each of ``wanted``, as ``user`` would get it.

    As root: in a forked child that has dropped to the user's uid and groups
    (setgroups, setresgid, setresuid), so ACLs, read-only mounts and the like
    count too; the answers come back over a pipe.  As anyone else: directly
    (only checking oneself is possible without privilege).
    """
    if os.geteuid() != 0:
        return [os.access(p, m) for p, m in wanted]
    pw = pwd.getpwnam(user)
    ids = user_groups(user)
    groups = sorted(ids[1]) if ids else [pw.pw_gid]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become the user, test, report, leave without cleanup
        try:
            os.close(r)
            os.setgroups(groups)
            os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
            os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
            os.write(w, "".join("1" if os.access(p, m) else "0" for p, m in wanted).encode())
        finally:
            os._exit(0)
    os.close(w)
    answer = b""
    with os.fdopen(r, "rb") as f:
        answer = f.read()
    os.waitpid(pid, 0)
    return [c == ord("1") for c in answer] + [False] * (len(wanted) - len(answer))


def check_permissions(config: Config, report: Report, user: str | None) -> None:
    name = service_user(config, user)
    try:
        pwd.getpwnam(name)
    except KeyError:
        report.problem(CONFIG, f"no user {name} on this host", "adduser --system --group --home /var/lib/postdesk postdesk (the Debian package does this)")
        return
    wanted: list[tuple[str, int, str]] = []
    attachments = str(config.store.attachments)
    wanted.append((attachments, os.W_OK | os.X_OK, "the attachment directory"))
    url = config.store.url
    if url.startswith("sqlite:///"):
        db = url[len("sqlite:///"):].split("?")[0]
        wanted.append((os.path.dirname(db) or ".", os.W_OK | os.X_OK, "the database directory (SQLite writes its -wal and -shm files there)"))
        if os.path.exists(db):
            wanted.append((db, os.R_OK | os.W_OK, "the database"))
    path = _unix_path(config.milter.socket)
    if path:
        wanted.append((os.path.dirname(path), os.W_OK | os.X_OK, "the socket directory"))
    wanted.append((config.source, os.R_OK, "the configuration file")) if os.path.exists(config.source) else None
    results = access_as(name, [(p, m) for p, m, _ in wanted])
    for (p, m, what), allowed in zip(wanted, results):
        verb = "read" if m == os.R_OK else "write"
        if allowed:
            report.ok(f"user {name} can {verb} {what} {p}")
        elif not os.path.exists(p):
            report.problem(CONFIG, f"{what} {p} does not exist", f"create it: install -d -o {name} -g {name} -m 0750 {p} (postdesk init creates the attachment directory)")
        else:
            report.problem(CONFIG, f"user {name} cannot {verb} {what} {p}", f"chown {name}:{name} {p}" + (" && chmod 0640 " + p if m == os.R_OK else ""))


def _unix_path(address: str) -> str | None:
    for prefix in ("unix:", "local:"):
        if address.startswith(prefix):
            return address[len(prefix):]
    return None


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


def run(config: Config, *, skip: frozenset[str] | set[str] = frozenset(), postfix_config: str | None = None, user: str | None = None, dns: bool = True, out=None) -> int:
    """Run every check not in ``skip``, print the report, return 0 / 78 / 69.

    ``postfix_config`` is passed to ``postconf -c`` (default: the system
    instance, or ``$POSTDESK_POSTFIX_CONFIG``).
    """
    out = out or sys.stdout
    postfix_config = postfix_config or os.environ.get("POSTDESK_POSTFIX_CONFIG") or None
    skip = set(skip) | (set() if dns else {"dns"})
    report = Report()
    report.ok(f"configuration {config.source} is valid")
    view: list[PostfixView | None] = [None]

    def postfix_step() -> None:
        view[0] = check_postfix(config, report, postfix_config)

    steps = {
        "templates": lambda: check_templates(config, report),
        "store": lambda: check_store(config, report),
        "postfix": postfix_step,
        "socket": lambda: (
            check_lmtp_socket(config, report)
            if view[0] is not None and not view[0].milter_attached and lmtp_routed(config, view[0])
            else check_socket(config, report, view[0].queue_directory if view[0] else None)
        ),
        "permissions": lambda: check_permissions(config, report, user),
        "dns": lambda: check_dns(config, report),
    }
    for name, step in steps.items():
        if name in skip:
            report.note(f"{name} check skipped")
            continue
        try:
            step()
        except Exception as e:  # a check must report, never crash with exit 1
            report.problem(DOWN, f"{name} check failed unexpectedly: {type(e).__name__}: {e}", "report this as a bug in postdesk check")
    for line in report.lines:
        print(line, file=out)
    status = report.status()
    n, w = len(report.problems), len(report.warnings)
    summary = f"{n} problem{'s' if n != 1 else ''} found" if n else "all checks passed"
    print(f"{summary}, {w} warning{'s' if w != 1 else ''} (exit status {status})", file=out)
    return status


# -- setup-postfix ------------------------------------------------------------------


def setup_postfix(config: Config, *, apply: bool = False, postfix_config: str | None = None, out=None, now: float | None = None) -> int:
    """Print (or, with ``apply``, run) the wiring of our milter into this host's Postfix.

    ``--apply`` first copies main.cf and master.cf to ``*.postdesk-YYYYmmddTHHMMSS``
    beside them, then runs ``postconf -e``, puts user postfix in the socket's
    group, and reloads Postfix when it runs.
    """
    out = out or sys.stdout
    postfix_config = postfix_config or os.environ.get("POSTDESK_POSTFIX_CONFIG") or None
    try:
        view = read_postfix(postfix_config)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as e:
        print(f"postdesk: postconf failed: {e}", file=sys.stderr)
        return EX_UNAVAILABLE
    lines = wiring_lines(config, view)
    if not lines:
        q = view.queue_directory
        print(f"postdesk: smtpd runs chrooted in {q} and cannot reach [milter] socket = {config.milter.socket}; "
              f'set it below the queue directory: socket = "unix:{q}/postdesk/milter.sock"', file=sys.stderr)
        return EX_CONFIG
    group = config.milter.socket_group or "postdesk"
    ids = user_groups("postfix")
    try:
        needs_group = ids is not None and grp.getgrnam(group).gr_gid not in ids[1]
    except KeyError:
        needs_group = False
    command = postconf_command(lines, postfix_config)
    if not apply:
        print("# The milter wiring for this host (postdesk setup-postfix --apply runs it, after a backup):", file=out)
        if needs_group:
            print(f"adduser postfix {group}", file=out)
        print(command, file=out)
        return EX_OK
    etc = postfix_config or postconf(["-h", "config_directory"], None).strip()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    for name in ("main.cf", "master.cf"):
        src = Path(etc, name)
        if src.exists():
            dst = src.with_name(f"{name}.postdesk-{stamp}")
            shutil.copy2(src, dst)
            print(f"backed up {src} -> {dst}", file=out)
    cmd = [shutil.which("postconf") or "/usr/sbin/postconf"] + (["-c", postfix_config] if postfix_config else []) + ["-e", *lines]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    print("postconf -e " + " ".join(shlex.quote(line) for line in lines), file=out)
    if needs_group:
        adduser = shutil.which("adduser")
        subprocess.run([adduser, "postfix", group] if adduser else ["gpasswd", "-a", "postfix", group], check=True, capture_output=True)
        print(f"added user postfix to group {group}", file=out)
    postfix = shutil.which("postfix") or "/usr/sbin/postfix"
    c = ["-c", postfix_config] if postfix_config else []
    if subprocess.run([postfix, *c, "status"], capture_output=True).returncode == 0:
        subprocess.run([postfix, *c, "reload"], check=True, capture_output=True)
        print("postfix reload", file=out)
    else:
        print("Postfix is not running: the wiring applies when it starts", file=out)
    return EX_OK
