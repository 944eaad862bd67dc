"""The test stack's OAuth 2.0 authorization server: start, stop, publish its key to Dovecot, and
the small client the tests use to register clients and users and to get, refresh and revoke tokens.

Why a real server: idlewire must hold IMAP sessions whose credentials expire. Dovecot's oauth2
passdb validates the JWT access tokens locally against the public key this module puts into
`dovecot.oauth_keys_dir()`; tokens live seconds in tests, so expiry, refresh, rotation, revocation
and an unreachable token endpoint really happen. The server itself (`infra/oauth_server/`) is
oauthlib + PyJWT on aiohttp and runs in the project's virtualenv as a detached process
(`<python> -m infra.oauth_server`), PID in a file, log and state (SQLite, signing key) under
`stack_root()/oauth/`, so a restart keeps clients, users and refresh tokens.

Standard library only, like the other infra modules: `python3 -m infra down` works anywhere.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import dovecot
from ._common import HOST, log, port_open, read_pid, stack_root, wait_for

OAUTH_PORT = int(os.environ.get("IDLEWIRE_OAUTH_PORT", "18080"))
# Default lifetime of access tokens (seconds); clients and single requests can ask for less.
ACCESS_TOKEN_LIFETIME = int(os.environ.get("IDLEWIRE_OAUTH_ACCESS_TOKEN_LIFETIME", "3600"))
AUDIENCE = "imap"
ALGORITHM = "RS256"
START_TIMEOUT = 30.0
# The log is appended to across starts; past this size it is moved to `.1` at the next start.
MAX_LOG_BYTES = 8 * 1024 * 1024

# What the server imports, and the pins installed when they are missing (same as pyproject.toml).
_IMPORTS = "import oauthlib, jwt, cryptography, aiohttp"
REQUIREMENTS = (
    "oauthlib==4.0.1",
    "pyjwt[crypto]==2.15.1",
    "cryptography==50.0.2",
    "aiohttp==3.14.5",
)
_REPO = Path(__file__).resolve().parents[1]
_MODULE = "infra.oauth_server"


# --- paths and settings --------------------------------------------------------------------------


def root() -> Path:
    path = stack_root() / "oauth"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)  # the signing key and the client secrets' hashes live here
    return path


def log_path() -> Path:
    return root() / "oauth-server.log"


def _pid_file() -> Path:
    return root() / "oauth-server.pid"


def base_url() -> str:
    return f"http://{HOST}:{OAUTH_PORT}"


def issuer() -> str:
    """The `iss` of every token. Dovecot accepts only the issuers in its `issuers =` setting
    (`dovecot.OAUTH_ISSUERS`, env IDLEWIRE_OAUTH_ISSUERS); by default ours is the first of them,
    so that one variable configures both sides. IDLEWIRE_OAUTH_ISSUER overrides it."""
    explicit = os.environ.get("IDLEWIRE_OAUTH_ISSUER")
    if explicit:
        return explicit
    accepted = dovecot.OAUTH_ISSUERS.split()
    return accepted[0] if accepted else base_url()


def settings() -> dict[str, str]:
    base = base_url()
    return {
        "OAUTH_ISSUER": issuer(),
        "OAUTH_TOKEN_URL": f"{base}/token",
        "OAUTH_REVOCATION_URL": f"{base}/revoke",
        "OAUTH_JWKS_URL": f"{base}/.well-known/jwks.json",
    }


def _python() -> str:
    """The interpreter that has the server's dependencies: the current one if it is a virtualenv,
    else the project's .venv (e.g. when called as `python3 -m infra up`)."""
    if sys.prefix != sys.base_prefix:
        return sys.executable
    venv = _REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# --- install / lifecycle -------------------------------------------------------------------------


def ensure_installed() -> None:
    """The server's Python dependencies, pinned; normally already there from `pip install -e
    .[dev]`, installed here only if missing (and only into a virtualenv)."""
    python = _python()
    if subprocess.run([python, "-c", _IMPORTS], capture_output=True).returncode == 0:
        return
    in_venv = (
        subprocess.run(
            [python, "-c", "import sys; sys.exit(sys.prefix == sys.base_prefix)"]
        ).returncode
        == 0
    )
    if not in_venv:
        raise RuntimeError(
            f"{python} lacks the OAuth server's packages and is not a virtualenv: "
            "run infra/bootstrap.sh (or `make bootstrap`) first"
        )
    log(f"pip install {' '.join(REQUIREMENTS)}")
    subprocess.run([python, "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One `up()`/`down()` at a time across processes (parallel test sessions)."""
    with (root() / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _our_pid() -> int | None:
    pid = read_pid(_pid_file())
    if pid is None:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if _MODULE.encode() in cmdline else None


def _exited(pid: int) -> bool:
    """Gone or a zombie. Reaps it when it is our child; otherwise init reaps it, about a second
    late on this machine (see dovecot._exited), and a zombie must already count as stopped."""
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _stop(pid: int, timeout: float) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        try:
            wait_for(lambda: _exited(pid), f"OAuth server (pid {pid}) to exit", wait, 0.02)
            return
        except RuntimeError:
            log(f"OAuth server (pid {pid}) still alive after {sig.name}")


def is_running() -> bool:
    return _our_pid() is not None and port_open(OAUTH_PORT)


def _ready(expected_issuer: str) -> bool:
    try:
        status, meta = _request("GET", "/.well-known/openid-configuration", timeout=1.0)
    except OSError:
        return False
    return status == 200 and meta.get("issuer") == expected_issuer


def up() -> dict[str, str]:
    """Start the server unless it runs; (re)publish its public key for Dovecot either way."""
    iss = issuer()
    with _locked():
        if is_running():
            if _ready(iss):
                _publish()
                return settings()
            # Running with another issuer (the environment changed): its tokens would be
            # rejected by Dovecot, so restart it with the current settings.
            log(f"OAuth server runs with another issuer than {iss!r}: restarting it")
            pid = _our_pid()
            if pid is not None:
                _stop(pid, timeout=10)
        if port_open(OAUTH_PORT):
            raise RuntimeError(f"{HOST}:{OAUTH_PORT} is taken by something that is not our server")
        _check_dovecot_accepts(iss)
        command = [
            _python(), "-m", _MODULE,
            "--host", HOST,
            "--port", str(OAUTH_PORT),
            "--issuer", iss,
            "--audience", AUDIENCE,
            "--state-dir", str(root()),
            "--dovecot-keys-dir", str(dovecot.oauth_keys_dir()),
            "--access-token-lifetime", str(ACCESS_TOKEN_LIFETIME),
        ]  # fmt: skip
        started = time.monotonic()
        with contextlib.suppress(OSError):
            if log_path().stat().st_size > MAX_LOG_BYTES:
                log_path().replace(log_path().with_suffix(".log.1"))
        with log_path().open("ab") as out:
            out.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            out.flush()
            proc = subprocess.Popen(
                command,
                cwd=_REPO,  # `-m infra.oauth_server`: infra is not installed, it is found here
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the test session that started it
            )
        _pid_file().write_text(f"{proc.pid}\n")
        try:
            wait_for(
                lambda: proc.poll() is not None or _ready(iss),
                "the OAuth server to answer",
                START_TIMEOUT,
                interval=0.05,
            )
        except RuntimeError as exc:
            _stop(proc.pid, timeout=5)
            raise RuntimeError(f"{exc}\n{_tail(log_path())}") from None
        if proc.poll() is not None:
            raise RuntimeError(f"OAuth server exited with {proc.returncode}:\n{_tail(log_path())}")
        log(f"OAuth server up in {time.monotonic() - started:.2f}s on {base_url()} (issuer {iss})")
    return settings()


def down() -> None:
    """SIGTERM the server (SIGKILL after 10 s) and return once its port is closed."""
    with _locked():
        pid = _our_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a paused() server cannot act on SIGTERM
        _stop(pid, timeout=10)
        _pid_file().unlink(missing_ok=True)
        wait_for(lambda: not port_open(OAUTH_PORT), "the OAuth port to close", 10, interval=0.05)
        log("OAuth server down")


def restart() -> dict[str, str]:
    down()
    return up()


def reset() -> None:
    """Stop, forget clients, users, refresh tokens and the signing key, and withdraw the key from
    Dovecot (its auth process may still hold it in its cache until Dovecot restarts)."""
    down()
    state = root()
    kids = [p.stem for p in (state / "public-keys").glob("*.pem")]
    keys_dir = dovecot.oauth_keys_dir()
    for kid in kids:
        for path in keys_dir.glob(f"*/{ALGORITHM}/{kid}"):
            path.unlink(missing_ok=True)
            for parent in (path.parent, path.parent.parent):
                with contextlib.suppress(OSError):  # not empty: another issuer's keys remain
                    parent.rmdir()
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm", "signing-key.pem"):
        (state / name).unlink(missing_ok=True)
    shutil.rmtree(state / "public-keys", ignore_errors=True)
    log("OAuth server state deleted")


def pause() -> None:
    """SIGSTOP the server: connections are still accepted by the kernel but never answered, as
    with a hung token endpoint (stop it with `down()` for a refused connection instead)."""
    pid = _our_pid()
    if pid is None:
        raise RuntimeError("the OAuth server is not running")
    os.kill(pid, signal.SIGSTOP)


def resume() -> None:
    pid = _our_pid()
    if pid is not None:
        os.kill(pid, signal.SIGCONT)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


def _check_dovecot_accepts(iss: str) -> None:
    """Warn when the running Dovecot's rendered `issuers =` would reject our tokens."""
    conf = dovecot.root() / "dovecot-oauth2.conf.ext"
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "issuers" and iss not in value.split():
            log(
                f"WARNING: Dovecot accepts issuers {value.strip()!r}, not {iss!r}: "
                "set IDLEWIRE_OAUTH_ISSUERS/IDLEWIRE_OAUTH_ISSUER and restart Dovecot"
            )


# --- the public key for Dovecot ------------------------------------------------------------------


def write_public_key(state_dir: Path, kid: str, pem: str) -> None:
    """Called by the server at start: the PEM of its current key, named by kid."""
    public = state_dir / "public-keys"
    public.mkdir(mode=0o755, exist_ok=True)
    _write_if_changed(public / f"{kid}.pem", pem)


def _azp_clients(state_dir: Path) -> list[str]:
    db = state_dir / "state.sqlite3"
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT client_id FROM clients WHERE include_azp")]
        except sqlite3.OperationalError:  # no table yet
            return []


def publish_keys(state_dir: Path, keys_dir: Path) -> list[Path]:
    """Copy every public key into Dovecot's key dictionary, which it reads at
    `<keys_dir>/<azp claim, or "default">/<alg>/<kid>`: under `default/` for tokens without
    `azp`, and under each `include_azp` client's id for its tokens. Returns files written."""
    written: list[Path] = []
    owners = ["default", *_azp_clients(state_dir)]
    for pem_file in sorted((state_dir / "public-keys").glob("*.pem")):
        pem = pem_file.read_text()
        for owner in owners:
            target = keys_dir / owner / ALGORITHM / pem_file.stem
            if _write_if_changed(target, pem):
                written.append(target)
    return written


def _publish() -> None:
    publish_keys(root(), dovecot.oauth_keys_dir())


def _write_if_changed(target: Path, text: str) -> bool:
    """Atomic write, world-readable (Dovecot's auth process runs as user dovecot)."""
    with contextlib.suppress(OSError):
        if target.read_text() == text:
            return False
    for parent in reversed(target.parents):
        if not parent.exists():
            parent.mkdir(mode=0o755)
            parent.chmod(0o755)  # mkdir's mode is masked by the umask
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, target)
    return True


# --- client for tests ----------------------------------------------------------------------------

# Loopback only: never send these requests through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(
    method: str,
    path: str,
    *,
    form: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
    basic: tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body or {}) of one request to the server."""
    headers: dict[str, str] = {}
    data: bytes | None = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    if basic is not None:
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
        pair = f"{urllib.parse.quote_plus(basic[0])}:{urllib.parse.quote_plus(basic[1])}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    req = urllib.request.Request(base_url() + path, data=data, headers=headers, method=method)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    if not body:
        return status, {}
    try:
        answer = json.loads(body)
    except ValueError:
        return status, {"raw": body.decode(errors="replace")}
    return status, answer if isinstance(answer, dict) else {"raw": answer}


def _admin(path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = _request("POST", path, json_body=body)
    if status != 200:
        raise RuntimeError(f"POST {path} failed ({status}): {answer}")
    return answer


def add_client(
    client_id: str,
    client_secret: str,
    *,
    scope: str = "imap",
    access_token_lifetime: int | None = None,
    refresh_token_lifetime: int | None = None,
    include_azp: bool = False,
) -> dict[str, Any]:
    """Register (or replace) a confidential client allowed the password and refresh grants."""
    body: dict[str, Any] = {
        "client_id": client_id,
        "client_secret": client_secret,
        "scope": scope,
        "include_azp": include_azp,
    }
    if access_token_lifetime is not None:
        body["access_token_lifetime"] = access_token_lifetime
    if refresh_token_lifetime is not None:
        body["refresh_token_lifetime"] = refresh_token_lifetime
    return _admin("/admin/clients", body)


def add_user(username: str, password: str) -> None:
    """Register (or re-password) a resource owner; `sub` of its tokens is this name, so it must
    equal the user's IMAP login name (see `dovecot.add_user`)."""
    _admin("/admin/users", {"username": username, "password": password})


def issue_tokens(
    client_id: str,
    username: str,
    *,
    scope: str | None = None,
    access_token_lifetime: int | None = None,
) -> dict[str, Any]:
    """A fresh token pair for a registered user without its password (admin shortcut)."""
    body: dict[str, Any] = {"client_id": client_id, "username": username}
    if scope is not None:
        body["scope"] = scope
    if access_token_lifetime is not None:
        body["access_token_lifetime"] = access_token_lifetime
    return _admin("/admin/tokens", body)


def revoke_all(*, username: str | None = None, client_id: str | None = None) -> int:
    """Revoke every refresh token of a user and/or a client; returns how many."""
    return int(_admin("/admin/revoke", {"username": username, "client_id": client_id})["revoked"])


def token_request(
    form: dict[str, str],
    client_id: str,
    client_secret: str,
    *,
    auth: str = "basic",
    path: str = "/token",
) -> tuple[int, dict[str, Any]]:
    """POST a grant (or, with path="/revoke", a revocation) with client authentication by
    `client_secret_basic` (auth="basic") or `client_secret_post` (auth="post")."""
    if auth == "basic":
        return _request("POST", path, form=form, basic=(client_id, client_secret))
    if auth == "post":
        full = {**form, "client_id": client_id, "client_secret": client_secret}
        return _request("POST", path, form=full)
    raise ValueError(f"auth must be 'basic' or 'post', not {auth!r}")


def password_grant(
    client_id: str,
    client_secret: str,
    username: str,
    password: str,
    *,
    scope: str | None = None,
    access_token_lifetime: int | None = None,
    auth: str = "basic",
) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "password", "username": username, "password": password}
    if scope is not None:
        form["scope"] = scope
    if access_token_lifetime is not None:
        form["access_token_lifetime"] = str(access_token_lifetime)
    return token_request(form, client_id, client_secret, auth=auth)


def refresh(
    client_id: str,
    client_secret: str,
    refresh_token: str,
    *,
    access_token_lifetime: int | None = None,
    auth: str = "basic",
) -> tuple[int, dict[str, Any]]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if access_token_lifetime is not None:
        form["access_token_lifetime"] = str(access_token_lifetime)
    return token_request(form, client_id, client_secret, auth=auth)


def revoke(
    client_id: str,
    client_secret: str,
    token: str,
    *,
    token_type_hint: str | None = None,
    auth: str = "basic",
) -> tuple[int, dict[str, Any]]:
    form = {"token": token}
    if token_type_hint is not None:
        form["token_type_hint"] = token_type_hint
    return token_request(form, client_id, client_secret, auth=auth, path="/revoke")
