"""Does the test Dovecot's configuration allow N idle connections, and what did its log say?"""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path
from typing import Any

from infra import dovecot

_KEYS = (
    "default_client_limit",
    "default_process_limit",
    "default_vsz_limit",
    "imap_hibernate_timeout",
    "mail_max_userip_connections",
    "service/imap/process_limit",
    "service/imap-hibernate/client_limit",
    "service/imap-hibernate/process_limit",
    "service/imap-login/client_limit",
    "service/imap-login/process_limit",
    "service/imap-login/process_min_avail",
    "service/imap-login/service_count",
)

# Log lines that mean the server turned clients away or could not keep up.
PATTERNS = {
    "limit reached": re.compile(r"Maximum number of|client_limit|process_limit|reached", re.I),
    "imap-master": re.compile(r"imap-master", re.I),
    "too many": re.compile(r"Too many", re.I),
    "refused": re.compile(r"refused", re.I),
    "hibernate failed": re.compile(r"Couldn't hibernate|Couldn't unhibernate", re.I),
    "fatal/panic": re.compile(r"Fatal|Panic", re.I),
    "error": re.compile(r": Error: "),
}


def _doveconf(*keys: str) -> dict[str, str]:
    proc = subprocess.run(
        ["doveconf", "-c", str(dovecot.conf_path()), "-f", "protocol=imap", *keys],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        k, _, v = line.partition(" = ")
        out[k.strip()] = v.strip()
    return out


def check_limits(connections: int) -> dict[str, Any]:
    """The settings that bound how many IDLE clients fit, and what falls short for `connections`.

    `connections` counts every client connection held at once (producer + floor + deliveries).
    """
    conf = _doveconf(*_KEYS)

    def num(key: str) -> int:
        value = conf.get(key, "0").split()[0]
        n = int(value) if value.isdigit() else 0
        return n or int(conf.get("default_process_limit", "100"))

    inotify = {
        name: int(Path(f"/proc/sys/fs/inotify/{name}").read_text())
        for name in ("max_user_instances", "max_user_watches")
    }
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    problems: list[str] = []
    if inotify["max_user_instances"] < connections + 128:
        problems.append(
            f"fs.inotify.max_user_instances={inotify['max_user_instances']} < {connections}+128: "
            "hibernation fails silently beyond it"
        )
    if int(conf.get("default_client_limit", "1000")) < connections:
        problems.append(f"default_client_limit={conf.get('default_client_limit')} < {connections}")
    hib = num("service/imap-hibernate/client_limit") * num("service/imap-hibernate/process_limit")
    if hib < connections:
        problems.append(f"imap-hibernate capacity {hib} < {connections}")
    login = num("service/imap-login/client_limit") * num("service/imap-login/process_limit")
    if conf.get("service/imap-login/service_count") != "0":
        problems.append("imap-login not in high-performance mode (service_count != 0)")
    elif login < connections:
        problems.append(f"imap-login capacity {login} < {connections}")
    if int(conf.get("mail_max_userip_connections", "10")) < 2:
        problems.append("mail_max_userip_connections < 2: deliveries would be refused")
    if soft < connections + 1000:
        problems.append(f"this process's RLIMIT_NOFILE {soft} < {connections}+1000")
    # With TLS, imap-login proxies every client for its whole life: 2 fds per client in one
    # imap-login process. Dovecot spreads clients over processes only when one is full.
    per_login = num("service/imap-login/client_limit")
    if 2 * per_login > hard:
        problems.append(
            f"imap-login client_limit {per_login} needs {2 * per_login} fds per process for TLS "
            f"proxying, RLIMIT_NOFILE is {hard}"
        )
    return {
        "doveconf": conf,
        "inotify": inotify,
        "nofile": [soft, hard],
        "connections": connections,
        "problems": problems,
    }


def log_offset() -> int:
    try:
        return dovecot.log_path().stat().st_size
    except OSError:
        return 0


def scan_log(since: int, samples: int = 4) -> dict[str, Any]:
    """Count lines matching PATTERNS in the log written after byte offset `since`."""
    try:
        with dovecot.log_path().open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except OSError:
        return {}
    out: dict[str, Any] = {}
    for name, pattern in PATTERNS.items():
        hits = [line for line in text.splitlines() if pattern.search(line)]
        if hits:
            out[name] = {"count": len(hits), "examples": hits[:samples]}
    return out
