"""API credentials: bearer tokens `iw_<credential_id>_<secret>`, stored as SHA-256 of the secret.

Shared by every HTTP surface (control-plane API, Faust status endpoints) so that authentication
and tenant isolation are the same everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets

import asyncpg

_TOKEN = re.compile(r"^iw_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    credential_id: str
    tenant_id: str | None  # None only for admin credentials not bound to a tenant
    is_admin: bool

    def may_read_tenant(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id


def parse_bearer(header: str | None) -> tuple[str, str] | None:
    """(credential_id, secret) from an `Authorization: Bearer iw_…` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    m = _TOKEN.match(token.strip()) if scheme.lower() == "bearer" else None
    return (m.group(1), m.group(2)) if m else None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_credential(
    conn: asyncpg.Connection | asyncpg.Pool, *, tenant_id: str | None, is_admin: bool = False
) -> str:
    """Create a credential and return its token; the token is shown once and never stored."""
    credential_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_credentials (credential_id, secret_sha256, tenant_id, is_admin)"
        " VALUES ($1, $2, $3, $4)",
        credential_id,
        _digest(secret),
        tenant_id,
        is_admin,
    )
    return f"iw_{credential_id}_{secret}"


async def authenticate(
    conn: asyncpg.Connection | asyncpg.Pool, header: str | None
) -> Principal | None:
    """The principal behind an Authorization header; None if missing, malformed or wrong."""
    parsed = parse_bearer(header)
    if parsed is None:
        return None
    credential_id, secret = parsed
    row = await conn.fetchrow(
        "SELECT secret_sha256, tenant_id, is_admin FROM api_credentials"
        " WHERE credential_id = $1 AND revoked_at IS NULL",
        credential_id,
    )
    if row is None or not hmac.compare_digest(bytes(row["secret_sha256"]), _digest(secret)):
        return None
    return Principal(credential_id, row["tenant_id"], row["is_admin"])
