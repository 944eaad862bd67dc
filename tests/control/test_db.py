"""Migrations and API credentials against the real PostgreSQL of the local stack."""

from __future__ import annotations

import asyncpg
import pytest

from control import auth, db

pytestmark = pytest.mark.integration


async def test_migrations_apply_once_and_concurrently(fresh_db):
    conns = [await asyncpg.connect(fresh_db) for _ in range(3)]
    try:
        import asyncio

        counts = await asyncio.gather(*(db.apply_migrations(c) for c in conns))
        assert sorted(counts) == [0, 0, len(db.migrations())]
        assert await db.apply_migrations(conns[0]) == 0
        versions = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY 1")
        assert [r["version"] for r in versions] == list(range(1, len(db.migrations()) + 1))
    finally:
        for c in conns:
            await c.close()


async def test_credentials_authenticate_and_stay_hashed(fresh_db):
    pool = await db.connect(fresh_db)
    try:
        await pool.execute("INSERT INTO tenants (tenant_id, name) VALUES ('acme', 'Acme')")
        token = await auth.create_credential(pool, tenant_id="acme")
        p = await auth.authenticate(pool, f"Bearer {token}")
        assert p is not None and p.tenant_id == "acme" and not p.is_admin
        assert p.may_read_tenant("acme") and not p.may_read_tenant("other")
        stored = await pool.fetchval("SELECT secret_sha256 FROM api_credentials")
        assert token.split("_", 2)[2].encode() not in bytes(stored)
        for bad in (
            None,
            "",
            "Bearer",
            f"Basic {token}",
            f"Bearer {token[:-1]}x",
            "Bearer iw_000000000000_" + "a" * 43,
        ):
            assert await auth.authenticate(pool, bad) is None
        await pool.execute("UPDATE api_credentials SET revoked_at = now()")
        assert await auth.authenticate(pool, f"Bearer {token}") is None
    finally:
        await pool.close()
