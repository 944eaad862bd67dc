"""A private PostgreSQL cluster for tests on 127.0.0.1:POSTGRES_PORT, under stack_root()/postgres.

Why not the distribution's cluster: it may not exist, may run another version, and belongs to
the machine. Ours is created with initdb from whatever server version is installed, started with
pg_ctl (no systemd), and thrown away by reset(). Its unix socket lives in the stack directory,
so nothing here touches /var/run/postgresql or the system clusters.

Standard library only: this runs with the system python3 before the project's virtualenv exists.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from ._common import HOST, POSTGRES_PORT, apt_install, log, read_pid, stack_root

# Application role and database; the test stack's credentials are not secrets.
DB_USER = "idlewire"
DB_PASSWORD = "idlewire"
DB_NAME = "idlewire"
DATABASE_URL = f"postgresql://{DB_USER}:{DB_PASSWORD}@{HOST}:{POSTGRES_PORT}/{DB_NAME}"

# initdb and postgres refuse to run as root; the Debian packages create this OS user.
OS_USER = "postgres"

# Rewritten at every start, included from postgresql.conf.
_SETTINGS = f"""\
# Written by infra/postgres.py at every start; edit that file, not this one.
listen_addresses = '{HOST}'
port = {POSTGRES_PORT}
unix_socket_directories = '{{socket_dir}}'
max_connections = 200
# THROWAWAY TEST CLUSTER: durability is traded for speed. A crash of the machine can corrupt it;
# reset() recreates it. Never copy these three settings to a real deployment.
fsync = off
synchronous_commit = off
full_page_writes = off
"""


# --- paths ---------------------------------------------------------------------------------------


def root() -> Path:
    path = stack_root() / "postgres"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    return root() / "data"


def socket_dir() -> Path:
    return root() / "run"


def log_path() -> Path:
    return root() / "log" / "postgres.log"


def bin_dir() -> Path:
    """The newest installed server version's binaries (/usr/lib/postgresql/<major>/bin)."""
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not candidates:
        raise RuntimeError("no PostgreSQL server: run infra.postgres.ensure_installed() first")

    def major(path: str) -> tuple[int, ...]:
        version = Path(path).parent.parent.name
        return tuple(int(p) for p in version.split(".") if p.isdigit())

    return Path(max(candidates, key=major)).parent


# --- install / lifecycle -------------------------------------------------------------------------


def ensure_installed() -> Path:
    """Install the distribution's PostgreSQL server if none is present; return its bin dir."""
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        apt_install("postgresql")
    return bin_dir()


def settings() -> dict[str, str]:
    return {"DATABASE_URL": DATABASE_URL}


def _postmaster_pid() -> int | None:
    """The server's pid from postmaster.pid, ignoring a stale file whose pid was reused."""
    pid = read_pid(data_dir() / "postmaster.pid")
    if pid is None:
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm in ("postgres", "postmaster") else None


def is_running() -> bool:
    return _postmaster_pid() is not None


def up() -> dict[str, str]:
    """Create the cluster if needed, start it unless running; return once the app role can query."""
    if is_running():
        return settings()
    started = time.monotonic()
    _ensure_os_user()
    for sub in ("run", "log"):
        (root() / sub).mkdir(exist_ok=True)
    _chown_to_postgres(root(), socket_dir(), root() / "log")
    if not (data_dir() / "PG_VERSION").exists():
        _initdb()
    _write_settings()

    proc = _as_postgres(
        str(bin_dir() / "pg_ctl"),
        "start",
        "-D",
        str(data_dir()),
        "-l",
        str(log_path()),
        "-w",
        "-t",
        "60",
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n{_tail(log_path())}")
    _ensure_app_role()
    _wait_for_app_connection(timeout=30)
    log(f"postgres up in {time.monotonic() - started:.2f}s (data {data_dir()})")
    return settings()


def down() -> None:
    """Fast shutdown: active sessions are disconnected, no waiting for clients."""
    if not is_running():
        return
    proc = _as_postgres(
        str(bin_dir() / "pg_ctl"), "stop", "-D", str(data_dir()), "-m", "fast", "-w", "-t", "60"
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pg_ctl stop failed:\n{proc.stdout}{proc.stderr}")
    log("postgres down")


def reset() -> None:
    """Stop and delete the cluster: the next up() starts from an empty database."""
    down()
    shutil.rmtree(data_dir(), ignore_errors=True)
    log("postgres data deleted")


# --- helpers -------------------------------------------------------------------------------------


def _ensure_os_user() -> None:
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise RuntimeError(
            f"OS user {OS_USER!r} missing: the postgresql package creates it; "
            "run infra.postgres.ensure_installed()"
        ) from None


def _chown_to_postgres(*paths: Path) -> None:
    entry = pwd.getpwnam(OS_USER)
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _as_postgres(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the postgres OS user (the server tools refuse root).

    cwd is our directory because the tools fail when they cannot read the caller's cwd (/root).
    pg_ctl -l sends the server's output to the log file, so capturing pg_ctl's own output is safe.
    """
    command = list(args) if os.geteuid() != 0 else ["runuser", "-u", OS_USER, "--", *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd=root(), timeout=120
    )


def _initdb() -> None:
    log(f"initdb {data_dir()}")
    data_dir().mkdir(exist_ok=True)
    _chown_to_postgres(data_dir())
    data_dir().chmod(0o700)
    proc = _as_postgres(
        str(bin_dir() / "initdb"),
        "-D",
        str(data_dir()),
        "-U",
        OS_USER,
        "--encoding=UTF8",
        "--locale=C",
        # Local socket: only the postgres OS user, as the postgres role (for our own setup).
        # TCP 127.0.0.1: password (SCRAM) for everyone.
        "--auth-local=peer",
        "--auth-host=scram-sha-256",
        # No fsync of the new cluster's files either (seconds on a slow disk); see _SETTINGS.
        "--no-sync",
    )
    if proc.returncode != 0:
        shutil.rmtree(data_dir(), ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{proc.stdout}{proc.stderr}")
    conf = data_dir() / "postgresql.conf"
    with conf.open("a") as f:
        f.write("\ninclude 'idlewire.conf'\n")


def _write_settings() -> None:
    """Rewritten at every start, so that changes here apply with down() + up()."""
    target = data_dir() / "idlewire.conf"
    target.write_text(_SETTINGS.format(socket_dir=socket_dir()))
    _chown_to_postgres(target)
    target.chmod(0o600)


def _psql_admin(sql: str) -> str:
    """Run SQL as the postgres superuser over our unix socket (peer authentication)."""
    proc = _as_postgres(
        str(bin_dir() / "psql"),
        "-h",
        str(socket_dir()),
        "-p",
        str(POSTGRES_PORT),
        "-U",
        OS_USER,
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-qAt",
        "-c",
        sql,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"psql failed: {proc.stderr.strip()}\nSQL: {sql}")
    return proc.stdout


def _ensure_app_role() -> None:
    """Role and database of the application; checked at every start, created when missing."""
    if not _psql_admin(f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'").strip():
        log(f"creating role {DB_USER}")
        _psql_admin(f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'")
    if not _psql_admin(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'").strip():
        log(f"creating database {DB_NAME}")
        _psql_admin(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")


def _wait_for_app_connection(timeout: float) -> None:
    """What clients will do: TCP to 127.0.0.1 with the app's password, and run a query."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(
            [str(bin_dir() / "psql"), DATABASE_URL, "-qAt", "-c", "SELECT 1"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
        )
        if proc.returncode == 0 and proc.stdout.strip() == "1":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"cannot query {DATABASE_URL}: {proc.stderr.strip()}\n{_tail(log_path())}"
            )
        time.sleep(0.2)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"
