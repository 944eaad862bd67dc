"""A self-contained Dovecot IMAP server for tests: IDLE, STARTTLS/IMAPS, password and OAuth2 users.

Why a real Dovecot: idlewire's whole job is holding IMAP IDLE sessions, and fakes do not reproduce
hibernation, wake-up latency, server-side kicks or restarts. Everything (config, certificates,
users, mail, logs, pid) lives under `stack_root()/dovecot/`, listens on loopback only and runs
without systemd. The facts behind the settings are in `dovecot.conf.in`.

Standard library only: this runs with the system python3 before the project's virtualenv exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import imaplib
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ._common import (
    HOST,
    IMAP_PORT,
    IMAPS_PORT,
    apt_install,
    log,
    port_open,
    read_pid,
    stack_root,
    wait_for,
    wait_for_port,
)

# Virtual mail users all run as this uid/gid. It needs no /etc/passwd entry; it must not be 0 and
# must be >= Dovecot's first_valid_uid (500).
MAIL_UID = 5000
MAIL_GID = 5000

# Space-separated JWT "iss" values the oauth2 passdb accepts.
OAUTH_ISSUERS = os.environ.get("IDLEWIRE_OAUTH_ISSUERS", "https://issuer.test")

# Each hibernated IDLE client holds one inotify instance of MAIL_UID; the kernel default (128)
# makes hibernation fail silently and every idle client then costs a full imap process.
INOTIFY_MIN_INSTANCES = 16384
INOTIFY_MIN_WATCHES = 524288

# A user that up() logs in as to prove that auth, userdb and storage work, not just the port.
PROBE_USER = "idlewire-probe"
# Name prefix of the marker user that tells whether Dovecot has re-read the passwd file.
_SENTINEL_PREFIX = "idlewire-passwd-version-"

# Dovecot's passwd-file splits on ':' and lines; the user name also becomes a directory name.
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@+=-]*$")
_TEMPLATES = Path(__file__).resolve().parent


# --- paths ---------------------------------------------------------------------------------------


def root() -> Path:
    """The Dovecot state directory. Traversable by user `dovecot` (auth reads files below it)."""
    path = stack_root() / "dovecot"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def conf_path() -> Path:
    return root() / "dovecot.conf"


def ca_file() -> Path:
    """PEM of the CA that signed the server certificate: use it as the clients' CA bundle."""
    return root() / "certs" / "ca.pem"


def oauth_keys_dir() -> Path:
    """Where the oauth2 passdb finds JWT keys: `<dir>/<azp|default>/<alg>/<kid|default>`.

    HS* key files hold base64(secret), RS*/ES* ones a PEM public key; readable by user dovecot.
    """
    return root() / "keys"


def passwd_path() -> Path:
    return root() / "users.passwd"


def log_path() -> Path:
    return root() / "log" / "dovecot.log"


def _pid_file() -> Path:
    return root() / "run" / "master.pid"


def _mail_root() -> Path:
    return root() / "mail"


def _binary(name: str) -> str:
    # root's PATH normally has /usr/sbin, but not every caller's does.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise RuntimeError(f"{name} not found: run infra.dovecot.ensure_installed() first")
    return found


# --- install / lifecycle -------------------------------------------------------------------------


def ensure_installed() -> None:
    """Debian's Dovecot (2.3.19 on Debian 12) and openssl for the test certificates."""
    apt_install("dovecot-imapd", "openssl")


def settings() -> dict[str, str]:
    return {
        "IMAP_HOST": HOST,
        "IMAP_PORT": str(IMAP_PORT),
        "IMAPS_PORT": str(IMAPS_PORT),
        "IMAP_CA_FILE": str(ca_file()),
    }


def _master_pid() -> int | None:
    """The running master's pid, ignoring a stale pid file whose pid was reused meanwhile."""
    pid = read_pid(_pid_file())
    if pid is None or _exited(pid):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm == "dovecot" else None


def _exited(pid: int) -> bool:
    """Gone or a zombie. The daemonized master is reparented to PID 1, and this machine's init
    reaps about a second late: a zombie must count as stopped, or every restart waits for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def is_running() -> bool:
    return _master_pid() is not None


def up() -> dict[str, str]:
    """Start Dovecot unless it is running; return the client settings once a real LOGIN works."""
    if is_running():
        return settings()
    started = time.monotonic()
    dovecot = _binary("dovecot")
    _prepare_dirs()
    _ensure_certs()
    _render_config()
    _raise_inotify_limits()
    probe_password = secrets.token_hex(8)
    # Not running yet, so no stale copy of the file to wait out (see add_users_with_passwords).
    _store_users({PROBE_USER: probe_password})
    for port in (IMAP_PORT, IMAPS_PORT):
        if port_open(port):
            raise RuntimeError(
                f"{HOST}:{port} is already in use by something that is not our Dovecot"
            )

    startup_log = root() / "log" / "startup.log"
    # `dovecot -c` daemonizes, and the daemon keeps the caller's stdout/stderr open: with pipes
    # (capture_output=True) this call would never return. A file is safe.
    with startup_log.open("ab") as out:
        proc = subprocess.run(
            [dovecot, "-c", str(conf_path())],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=root(),
            timeout=60,
        )
    if proc.returncode != 0:
        raise RuntimeError(
            f"dovecot exited with {proc.returncode}:\n{_tail(startup_log)}\n{_tail(log_path())}"
        )
    try:
        wait_for_port(IMAPS_PORT, "Dovecot IMAPS", timeout=30)
        wait_for(lambda: _can_login(PROBE_USER, probe_password), "a Dovecot LOGIN", timeout=30)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{_tail(log_path())}") from None
    log(f"dovecot up in {time.monotonic() - started:.2f}s (config {conf_path()})")
    return settings()


def down() -> None:
    """SIGTERM the master (SIGKILL after 30 s); return once the IMAP ports are free again."""
    pid = _master_pid()
    if pid is None:
        return
    # Like _common.stop_pid, but a zombie counts as stopped (see _exited).
    os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: _exited(pid), f"dovecot (pid {pid}) to exit", timeout=30, interval=0.05)
    except RuntimeError:
        log(f"dovecot (pid {pid}) ignored SIGTERM; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # Login processes hold the listening sockets; the next up() must be able to bind them.
    wait_for(
        lambda: not port_open(IMAP_PORT) and not port_open(IMAPS_PORT),
        "Dovecot's IMAP ports to close",
        timeout=30,
        interval=0.05,
    )
    log("dovecot down")


def reset() -> None:
    """Stop and delete users, mail and state.

    Kept: the CA and server certificate (clients may hold IMAP_CA_FILE) and the OAuth key
    directory (an OAuth test server may have published its keys there).
    """
    down()
    for name in ("mail", "state", "run", "users.passwd"):
        path = root() / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    log("dovecot users and mail deleted")


def restart() -> dict[str, str]:
    """Stop and start again: tests use it to cut IDLE sessions the way a server restart does."""
    down()
    return up()


def _prepare_dirs() -> None:
    base = root()
    for sub in ("run", "state", "log", "certs"):
        (base / sub).mkdir(exist_ok=True)
    (base / "certs").chmod(0o700)
    # Read by the auth process, which runs as user "dovecot".
    oauth_keys_dir().mkdir(exist_ok=True)
    oauth_keys_dir().chmod(0o755)
    # Owned by the mail uid so that Dovecot can also create a missing home directory itself.
    _mail_root().mkdir(exist_ok=True)
    os.chown(_mail_root(), MAIL_UID, MAIL_GID)
    _mail_root().chmod(0o755)


def _render(template: str, target: Path) -> None:
    text = (_TEMPLATES / template).read_text()
    values = {
        "ROOT": str(root()),
        "HOST": HOST,
        "IMAP_PORT": str(IMAP_PORT),
        "IMAPS_PORT": str(IMAPS_PORT),
        "MAIL_UID": str(MAIL_UID),
        "MAIL_GID": str(MAIL_GID),
        "OAUTH_ISSUERS": OAUTH_ISSUERS,
    }
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError(f"{template}: unknown placeholders {sorted(set(leftover))}")
    target.write_text(text)
    target.chmod(0o644)


def _render_config() -> None:
    """Rendered on every start, so that template changes take effect with restart()."""
    _render("dovecot.conf.in", conf_path())
    _render("dovecot-oauth2.conf.ext.in", root() / "dovecot-oauth2.conf.ext")


def _ensure_certs() -> None:
    """Make a small CA and a server certificate (localhost, 127.0.0.1) signed by it, once.

    A CA rather than a lone self-signed certificate: clients load ca.pem as an ordinary CA bundle
    and verify the server's name like they would in production.
    """
    certs = root() / "certs"
    if all((certs / name).exists() for name in ("ca.pem", "cert.pem", "key.pem")):
        return
    openssl = _binary("openssl")
    log("generating the test CA and the Dovecot server certificate")
    with tempfile.TemporaryDirectory(dir=root()) as tmp:
        work = Path(tmp)
        (work / "openssl.cnf").write_text(
            "[req]\n"
            "distinguished_name = dn\n"
            "prompt = no\n"
            "[dn]\n"
            "CN = idlewire test CA\n"
            "[ca_ext]\n"
            "basicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, keyCertSign, cRLSign\n"
            "subjectKeyIdentifier = hash\n"
            "[server_ext]\n"
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid:always\n"
        )
        key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

        def run(args: str, *subject: str) -> None:
            # File names are relative to `work` and contain no spaces: split() is enough.
            command = [openssl, *args.split(), *subject]
            proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr}")

        run(
            f"req -x509 {key} -config openssl.cnf -extensions ca_ext -days 3650 -sha256 "
            "-keyout ca-key.pem -out ca.pem",
            "-subj",
            "/CN=idlewire test CA",
        )
        run(
            f"req -new {key} -config openssl.cnf -keyout key.pem -out server.csr",
            "-subj",
            "/CN=localhost",
        )
        run(
            f"x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -days 3650 -sha256 "
            f"-set_serial 0x{secrets.token_hex(16)} "
            "-extfile openssl.cnf -extensions server_ext -out cert.pem"
        )
        for name, mode in (
            ("ca-key.pem", 0o600),
            ("key.pem", 0o600),
            ("ca.pem", 0o644),
            ("cert.pem", 0o644),
        ):
            (work / name).chmod(mode)
            os.replace(work / name, certs / name)


def _raise_inotify_limits() -> None:
    for name, minimum in (
        ("max_user_instances", INOTIFY_MIN_INSTANCES),
        ("max_user_watches", INOTIFY_MIN_WATCHES),
    ):
        path = Path("/proc/sys/fs/inotify") / name
        try:
            if int(path.read_text()) >= minimum:
                continue
            path.write_text(f"{minimum}\n")
            log(f"raised fs.inotify.{name} to {minimum}")
        except (OSError, ValueError) as exc:
            log(
                f"WARNING: cannot raise fs.inotify.{name} to {minimum} ({exc}); hibernated IDLE "
                "clients beyond the limit will fall back to costly non-hibernated sessions"
            )


def _can_login(user: str, password: str) -> bool:
    """A full IMAPS LOGIN verified against our CA: proves TLS, auth, userdb and storage."""
    ctx = ssl.create_default_context(cafile=str(ca_file()))
    try:
        with imaplib.IMAP4_SSL(HOST, IMAPS_PORT, ssl_context=ctx, timeout=5) as imap:
            imap.login(user, password)
            imap.select("INBOX")
            imap.logout()
        return True
    except (OSError, imaplib.IMAP4.error):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


# --- users ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _passwd_lock() -> Iterator[None]:
    """Serialize read-modify-write of the passwd file between concurrent test processes."""
    with (root() / "users.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check(user: str, password: str) -> None:
    if not _USER_RE.match(user):
        raise ValueError(f"invalid IMAP user name {user!r} (letters, digits and ._@+=- only)")
    if any(c in password for c in ":\r\n\0"):
        raise ValueError("passwords for the passwd-file must not contain ':', CR, LF or NUL")


def _read_passwd() -> dict[str, str]:
    users: dict[str, str] = {}
    try:
        text = passwd_path().read_text()
    except FileNotFoundError:
        return users
    for line in text.splitlines():
        if line and not line.startswith("#"):
            users[line.split(":", 1)[0]] = line
    return users


def _write_passwd(users: dict[str, str]) -> None:
    """Replace the file atomically, so that Dovecot never reads a half-written file.

    Dovecot's passwd-file notices a change only by st_mtime (whole seconds) or st_size, so two
    writes within one second with equal sizes (a changed password of the same length) would go
    unnoticed: each write therefore gets an mtime at least one second after the previous one.
    """
    target = passwd_path()
    try:
        previous_mtime = int(target.stat().st_mtime)
    except FileNotFoundError:
        previous_mtime = 0
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in users.values()))
    # The auth process runs as user "dovecot"; nobody else needs the (plain-text) passwords.
    try:
        os.chown(tmp, 0, grp.getgrnam("dovecot").gr_gid)
        tmp.chmod(0o640)
    except KeyError:
        tmp.chmod(0o644)
    mtime = max(int(time.time()), previous_mtime + 1)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, target)


def _make_maildirs(users: Iterable[str]) -> None:
    mail = _mail_root()
    if not mail.exists():
        _prepare_dirs()
    for user in users:
        home = mail / user
        for path in (
            home,
            home / "Maildir",
            home / "Maildir" / "cur",
            home / "Maildir" / "new",
            home / "Maildir" / "tmp",
        ):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            os.chown(path, MAIL_UID, MAIL_GID)


def add_user(user: str, password: str) -> None:
    """Create the user or change its password; effective for every login after the return."""
    add_users_with_passwords({user: password})


def add_users(prefix: str, n: int, password: str) -> list[str]:
    """Create users `<prefix>1` .. `<prefix><n>` sharing one password, in one file write."""
    names = [f"{prefix}{i}" for i in range(1, n + 1)]
    add_users_with_passwords(dict.fromkeys(names, password))
    return names


def add_users_with_passwords(credentials: dict[str, str]) -> None:
    """Create or update many users at once (one read and one atomic write of the passwd file).

    Returns only once Dovecot sees the change. Its passwd-file driver re-checks the file at most
    once per wall-clock second, so if it already looked at the file in the current second the
    change is visible only from the next second on. A fresh sentinel user written with every change
    tells the two cases apart with one userdb lookup (~15 ms); only in the stale case does this
    wait for the next second (then up to 1 s). Batch users into one call rather than a loop.
    """
    sentinel = _store_users(credentials)
    if not is_running():
        return
    if _doveadm("user", "-f", "uid", sentinel).returncode == 0:
        return
    now = time.time()
    time.sleep(int(now) + 1.005 - now)


def _store_users(credentials: dict[str, str]) -> str:
    """Write the users plus a new sentinel user; return the sentinel's name."""
    for user, password in credentials.items():
        _check(user, password)
    _make_maildirs(credentials)
    sentinel = f"{_SENTINEL_PREFIX}{secrets.token_hex(6)}"
    with _passwd_lock():
        users = {
            name: line
            for name, line in _read_passwd().items()
            if not name.startswith(_SENTINEL_PREFIX)
        }
        for user, password in credentials.items():
            users[user] = f"{user}:{{PLAIN}}{password}::::::"
        # Never logs in (random password, no Maildir): it only marks this version of the file.
        users[sentinel] = f"{sentinel}:{{PLAIN}}{secrets.token_hex(16)}::::::"
        _write_passwd(users)
    return sentinel


# --- mail and sessions ---------------------------------------------------------------------------


def _doveadm(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [_binary("doveadm"), "-c", str(conf_path()), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def deliver(user: str, message: bytes, folder: str = "INBOX") -> None:
    """Store a message for `user` the way a local delivery would; it wakes the user's IDLE sessions.

    A folder other than INBOX is created if it does not exist yet.
    """
    proc = _doveadm("save", "-u", user, "-m", folder, stdin=message)
    if proc.returncode != 0 and folder.upper() != "INBOX" and b"doesn't exist" in proc.stderr:
        created = _doveadm("mailbox", "create", "-u", user, folder)
        if created.returncode != 0:
            raise RuntimeError(
                f"doveadm mailbox create {folder!r} for {user!r} failed: "
                f"{created.stderr.decode(errors='replace').strip()}"
            )
        proc = _doveadm("save", "-u", user, "-m", folder, stdin=message)
    if proc.returncode != 0:
        raise RuntimeError(
            f"doveadm save to {user!r}/{folder!r} failed (exit {proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )


def kick(user: str, timeout: float = 15.0) -> None:
    """Drop all of the user's IMAP sessions server-side; return once they are gone.

    `doveadm kick` (2.3) kills processes, not connections, and refuses (exit 0, a warning on
    stdout) to kill an imap-hibernate process that also holds other users' clients. So a hibernated
    session is first woken by an inotify event in its mailbox directories (a dotfile created and
    removed, which Maildir ignores and the client never sees): it moves back into its own imap
    process within milliseconds, and the next kick terminates that one ("* BYE Server shutting
    down." then close), without touching other users.
    """
    deadline = time.monotonic() + timeout
    while True:
        proc = _doveadm("kick", user)
        out = proc.stdout.decode(errors="replace")
        if proc.returncode not in (0, 68):  # 68 (EX_NOUSER): the user has no sessions
            raise RuntimeError(
                f"doveadm kick {user!r} failed (exit {proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()} {out.strip()}"
            )
        if not _session_pids(user):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sessions of {user!r} still present after {timeout:.0f}s: {out}")
        if "would also be kicked" in out:  # shared imap-hibernate process: wake the sessions
            _wake_sessions(user)
        time.sleep(0.02)


def _session_pids(user: str) -> set[int]:
    """Pids of the user's live sessions according to anvil (`doveadm who`)."""
    proc = _doveadm("who", "-1", user)
    pids: set[int] = set()
    for line in proc.stdout.decode(errors="replace").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == user and fields[2].isdigit():
            pids.add(int(fields[2]))
    return pids


def _wake_sessions(user: str) -> None:
    """Trigger inotify in every folder of the user so that imap-hibernate hands sessions back."""
    maildir = _mail_root() / user / "Maildir"
    folders = [maildir, *(p for p in maildir.glob(".*") if p.is_dir())]
    for folder in folders:
        for sub in ("cur", "new"):
            marker = folder / sub / ".idlewire-wake"
            try:
                marker.touch()
                marker.unlink()
            except OSError:
                pass
