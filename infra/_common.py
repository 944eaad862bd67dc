"""Shared helpers of the stack scripts: where things live, ports, waiting, installing."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# One stack per machine: fixed loopback ports, away from the services' usual defaults so that
# a system-wide Kafka/PostgreSQL/Dovecot (if any) does not collide with ours.
HOST = "127.0.0.1"
KAFKA_PORT = int(os.environ.get("IDLEWIRE_KAFKA_PORT", "19092"))
KAFKA_CONTROLLER_PORT = int(os.environ.get("IDLEWIRE_KAFKA_CONTROLLER_PORT", "19093"))
POSTGRES_PORT = int(os.environ.get("IDLEWIRE_POSTGRES_PORT", "15432"))
IMAP_PORT = int(os.environ.get("IDLEWIRE_IMAP_PORT", "10143"))
IMAPS_PORT = int(os.environ.get("IDLEWIRE_IMAPS_PORT", "10993"))


def stack_root() -> Path:
    """Runtime state (data dirs, logs, pid files, certificates). Outside the repository."""
    root = Path(os.environ.get("IDLEWIRE_STACK_DIR", "/var/tmp/idlewire-stack"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    return root


def cache_root() -> Path:
    """Downloaded artifacts (Kafka jars). Outside the repository, survives `down`."""
    root = Path(os.environ.get("IDLEWIRE_CACHE_DIR", str(Path.home() / ".cache" / "idlewire")))
    root.mkdir(parents=True, exist_ok=True)
    return root


def log(msg: str) -> None:
    """Progress goes to stderr so that stdout carries only KEY=value lines."""
    print(f"[infra] {msg}", file=sys.stderr, flush=True)


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], bool], what: str, timeout: float, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_for_port(port: int, what: str, timeout: float = 60.0) -> None:
    wait_for(lambda: port_open(port), f"{what} on {HOST}:{port}", timeout)


def pid_alive(pid: int) -> bool:
    # A child of ours that exited stays a zombie (and "alive" to kill 0) until reaped.
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def stop_pid(pid: int, what: str, timeout: float = 30.0) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_for(lambda: not pid_alive(pid), f"{what} (pid {pid}) to exit", timeout)
    except RuntimeError:
        log(f"{what} (pid {pid}) ignored SIGTERM; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


_apt_updated = False


def apt_install(*packages: str) -> None:
    """Install Debian packages that are missing (root; apt-get update once per run)."""
    global _apt_updated
    missing = [
        p
        for p in packages
        if subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
        ).stdout.strip()
        != "install ok installed"
    ]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"missing Debian packages {missing} and no apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if not _apt_updated:
        log("apt-get update")
        subprocess.run(
            [*sudo, "apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL
        )
        _apt_updated = True
    log(f"apt-get install {' '.join(missing)}")
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
