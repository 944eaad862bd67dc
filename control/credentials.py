"""Mailbox credentials in PostgreSQL, encrypted at rest (control.crypto), with key rotation.

Implements producers.credentials.SecretStore. Token refresh holds the row lock (SELECT … FOR
UPDATE) while it calls the token endpoint, so across all producer processes only one refresh
per mailbox runs at a time and a rotated refresh token is stored atomically with its access token.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from control.crypto import DecryptError, KeyRing, Sealed
from producers.credentials import Decide
from producers.oauth import OAuthTokens


class PostgresSecretStore:
    def __init__(self, pool: asyncpg.Pool, keys: KeyRing) -> None:
        self._pool = pool
        self._keys = keys

    def _seal(self, mailbox_id: str, data: dict[str, Any]) -> Sealed:
        return self._keys.seal(json.dumps(data).encode(), mailbox_id.encode())

    def _open(self, row: asyncpg.Record) -> dict[str, Any]:
        sealed = Sealed(row["key_id"], bytes(row["nonce"]), bytes(row["ciphertext"]))
        data: dict[str, Any] = json.loads(self._keys.open(sealed, row["mailbox_id"].encode()))
        return data

    async def _put(self, mailbox_id: str, kind: str, data: dict[str, Any]) -> None:
        s = self._seal(mailbox_id, data)
        await self._pool.execute(
            """
            INSERT INTO mailbox_credentials (mailbox_id, kind, key_id, nonce, ciphertext)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (mailbox_id) DO UPDATE SET kind = EXCLUDED.kind,
                key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
                ciphertext = EXCLUDED.ciphertext, version = mailbox_credentials.version + 1,
                updated_at = now()
            """,
            mailbox_id,
            kind,
            s.key_id,
            s.nonce,
            s.ciphertext,
        )

    async def put_password(self, mailbox_id: str, password: str) -> None:
        await self._put(mailbox_id, "password", {"password": password})

    async def put_oauth(self, mailbox_id: str, tokens: OAuthTokens) -> None:
        await self._put(mailbox_id, "oauth2", tokens.to_json())

    async def delete(self, mailbox_id: str) -> None:
        await self._pool.execute(
            "DELETE FROM mailbox_credentials WHERE mailbox_id = $1", mailbox_id
        )

    async def password(self, mailbox_id: str) -> str | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM mailbox_credentials WHERE mailbox_id = $1 AND kind = 'password'",
            mailbox_id,
        )
        return str(self._open(row)["password"]) if row else None

    async def oauth(self, mailbox_id: str) -> OAuthTokens | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM mailbox_credentials WHERE mailbox_id = $1 AND kind = 'oauth2'",
            mailbox_id,
        )
        return OAuthTokens.from_json(self._open(row)) if row else None

    async def update_oauth(self, mailbox_id: str, decide: Decide) -> OAuthTokens | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM mailbox_credentials WHERE mailbox_id = $1 AND kind = 'oauth2'"
                " FOR UPDATE",
                mailbox_id,
            )
            if row is None:
                return None
            current = OAuthTokens.from_json(self._open(row))
            new = await decide(current)
            if new is None:
                return current
            s = self._seal(mailbox_id, new.to_json())
            await conn.execute(
                "UPDATE mailbox_credentials SET key_id = $2, nonce = $3, ciphertext = $4,"
                " version = version + 1, updated_at = now() WHERE mailbox_id = $1",
                mailbox_id,
                s.key_id,
                s.nonce,
                s.ciphertext,
            )
            return new

    async def rotate(self, batch: int = 100) -> tuple[int, list[str]]:
        """Re-encrypt every row not under the primary key. Online: rows are re-sealed in short
        transactions and readers decrypt old and new rows alike meanwhile. Returns how many rows
        were re-encrypted and the mailbox ids whose rows no key in the ring can open."""
        done, broken = 0, list[str]()
        while True:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "SELECT * FROM mailbox_credentials WHERE key_id <> $1"
                    " AND NOT (mailbox_id = ANY($3::text[])) LIMIT $2 FOR UPDATE SKIP LOCKED",
                    self._keys.primary_id,
                    batch,
                    broken,
                )
                for row in rows:
                    try:
                        s = self._seal(row["mailbox_id"], self._open(row))
                    except DecryptError:
                        broken.append(row["mailbox_id"])
                        continue
                    await conn.execute(
                        "UPDATE mailbox_credentials SET key_id = $2, nonce = $3,"
                        " ciphertext = $4, updated_at = now() WHERE mailbox_id = $1",
                        row["mailbox_id"],
                        s.key_id,
                        s.nonce,
                        s.ciphertext,
                    )
                    done += 1
            if len(rows) < batch:
                return done, broken
