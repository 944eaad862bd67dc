"""Clients, users and refresh tokens in one SQLite file, so that a server restart keeps them.

Tests stop and start the server to simulate an unreachable token endpoint; the refresh tokens a
producer holds must still work afterwards, exactly as with a real provider. Secrets are stored
hashed: client secrets and user passwords with PBKDF2, refresh tokens (256 random bits, so no
stretching needed) with SHA-256. Nothing here ever logs a secret.

All writes happen on the server's single event-loop thread, and each multi-statement change is one
transaction: a refresh token can never be consumed twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,                  -- allowed scopes, space-separated
    default_scopes TEXT NOT NULL,          -- granted when the request names none
    grant_types TEXT NOT NULL,             -- space-separated
    access_token_lifetime INTEGER,         -- seconds; NULL: the server's default
    refresh_token_lifetime INTEGER NOT NULL,
    include_azp INTEGER NOT NULL DEFAULT 0 -- put "azp": client_id into access tokens
);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family TEXT NOT NULL,                  -- one grant: every rotation of it shares this id
    client_id TEXT NOT NULL,
    username TEXT NOT NULL,
    scopes TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,                          -- set when rotated: using it again is a replay
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON refresh_tokens (username, client_id);
"""

# Test passwords, not production ones: enough stretching to not store them plainly, cheap enough
# (~3 ms) that every token request can authenticate its client.
_PBKDF2_ITERATIONS = 10_000


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, _PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${_PBKDF2_ITERATIONS}${salt.hex()}${digest.hex()}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, expected = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(digest.hex(), expected)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    client_id: str
    scopes: tuple[str, ...]
    default_scopes: tuple[str, ...]
    grant_types: tuple[str, ...]
    access_token_lifetime: int | None
    refresh_token_lifetime: int
    include_azp: bool


@dataclass(frozen=True)
class RefreshToken:
    token_hash: str
    family: str
    client_id: str
    username: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float
    used_at: float | None
    revoked_at: float | None


class Store:
    def __init__(self, path: Path) -> None:
        # isolation_level=None: autocommit, with explicit BEGIN IMMEDIATE where several statements
        # must land together.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    # --- clients ---

    def put_client(self, client: Client, secret: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO clients VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                client.client_id,
                hash_secret(secret),
                " ".join(client.scopes),
                " ".join(client.default_scopes),
                " ".join(client.grant_types),
                client.access_token_lifetime,
                client.refresh_token_lifetime,
                int(client.include_azp),
            ),
        )

    def client(self, client_id: str) -> Client | None:
        row = self._db.execute(
            "SELECT client_id, scopes, default_scopes, grant_types, access_token_lifetime,"
            " refresh_token_lifetime, include_azp FROM clients WHERE client_id = ?",
            (client_id,),
        ).fetchone()
        if row is None:
            return None
        return Client(
            client_id=row[0],
            scopes=tuple(row[1].split()),
            default_scopes=tuple(row[2].split()),
            grant_types=tuple(row[3].split()),
            access_token_lifetime=row[4],
            refresh_token_lifetime=row[5],
            include_azp=bool(row[6]),
        )

    def authenticate_client(self, client_id: str, secret: str) -> Client | None:
        row = self._db.execute(
            "SELECT secret_hash FROM clients WHERE client_id = ?", (client_id,)
        ).fetchone()
        if row is None or not check_secret(secret, row[0]):
            return None
        return self.client(client_id)

    def azp_client_ids(self) -> list[str]:
        rows = self._db.execute("SELECT client_id FROM clients WHERE include_azp = 1")
        return [r[0] for r in rows]

    # --- users ---

    def put_user(self, username: str, password: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO users VALUES (?, ?)", (username, hash_secret(password))
        )

    def user_exists(self, username: str) -> bool:
        row = self._db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
        return row is not None

    def authenticate_user(self, username: str, password: str) -> bool:
        row = self._db.execute(
            "SELECT password_hash FROM users WHERE username = ?", (username,)
        ).fetchone()
        return row is not None and check_secret(password, row[0])

    # --- refresh tokens ---

    def refresh_token(self, token: str) -> RefreshToken | None:
        row = self._db.execute(
            "SELECT token_hash, family, client_id, username, scopes, issued_at, expires_at,"
            " used_at, revoked_at FROM refresh_tokens WHERE token_hash = ?",
            (token_hash(token),),
        ).fetchone()
        if row is None:
            return None
        return RefreshToken(
            token_hash=row[0],
            family=row[1],
            client_id=row[2],
            username=row[3],
            scopes=tuple(row[4].split()),
            issued_at=row[5],
            expires_at=row[6],
            used_at=row[7],
            revoked_at=row[8],
        )

    def add_refresh_token(
        self,
        token: str,
        *,
        client_id: str,
        username: str,
        scopes: tuple[str, ...],
        lifetime: int,
        replaces: RefreshToken | None = None,
    ) -> None:
        """Store a new refresh token; when it `replaces` a rotated one, mark that one used in the
        same transaction (a new grant gets a new family)."""
        now = time.time()
        family = replaces.family if replaces is not None else uuid.uuid4().hex
        with self._transaction():
            if replaces is not None:
                self._db.execute(
                    "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?",
                    (now, replaces.token_hash),
                )
            self._db.execute(
                "INSERT INTO refresh_tokens VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (
                    token_hash(token),
                    family,
                    client_id,
                    username,
                    " ".join(scopes),
                    now,
                    now + lifetime,
                ),
            )

    def revoke_family(self, family: str) -> int:
        cur = self._db.execute(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
            (time.time(), family),
        )
        return cur.rowcount

    def revoke_matching(self, username: str | None, client_id: str | None) -> int:
        """Revoke every live refresh token of a user and/or client (both None: all of them)."""
        where, args = ["revoked_at IS NULL"], []
        if username is not None:
            where.append("username = ?")
            args.append(username)
        if client_id is not None:
            where.append("client_id = ?")
            args.append(client_id)
        cur = self._db.execute(
            f"UPDATE refresh_tokens SET revoked_at = ? WHERE {' AND '.join(where)}",
            (time.time(), *args),
        )
        return cur.rowcount

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
