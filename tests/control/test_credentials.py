"""Encrypted credentials in the real PostgreSQL: at rest, isolation of rows, rotation, locking."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from control import db
from control.credentials import PostgresSecretStore
from control.crypto import DecryptError, KeyRing, KeyRingError
from producers.oauth import OAuthTokens

pytestmark = pytest.mark.integration
K1, K2 = KeyRing.generate("k1"), KeyRing.generate("k2")


@pytest.fixture
async def pool(fresh_db):  # type: ignore[no-untyped-def]
    p = await db.connect(fresh_db)
    yield p
    await p.close()


def mid() -> str:
    return f"t:{uuid.uuid4().hex[:8]}"


def test_key_ring_errors_never_echo_keys():
    for spec in ("", "k1", "k1:@@@", "k1:" + "QUJD", f"{K1},{K1}"):
        with pytest.raises(KeyRingError) as err:
            KeyRing.parse(spec)
        assert K1.split(":")[1] not in str(err.value)


async def test_secrets_are_encrypted_and_bound_to_their_row(pool):
    store = PostgresSecretStore(pool, KeyRing.parse(K1))
    a, b = mid(), mid()
    await store.put_password(a, "correct horse battery staple")
    assert await store.password(a) == "correct horse battery staple"
    raw = await pool.fetchrow("SELECT * FROM mailbox_credentials WHERE mailbox_id = $1", a)
    assert b"horse" not in bytes(raw["ciphertext"]) and raw["key_id"] == "k1"
    # a ciphertext moved to another mailbox's row does not decrypt (associated data)
    await pool.execute(
        "INSERT INTO mailbox_credentials (mailbox_id, kind, key_id, nonce, ciphertext)"
        " VALUES ($1, 'password', $2, $3, $4)",
        b,
        raw["key_id"],
        raw["nonce"],
        raw["ciphertext"],
    )
    with pytest.raises(DecryptError):
        await store.password(b)
    with pytest.raises(DecryptError):
        await PostgresSecretStore(pool, KeyRing.parse(K2)).password(a)


async def test_rotation_re_encrypts_online(pool):
    old = PostgresSecretStore(pool, KeyRing.parse(K1))
    ids = [mid() for _ in range(5)]
    for i in ids:
        await old.put_password(i, f"pw-{i}")
    both = PostgresSecretStore(pool, KeyRing.parse(f"{K2},{K1}"))  # new key first
    assert await both.password(ids[0]) == f"pw-{ids[0]}"  # readable before rotation
    broken = mid()
    await pool.execute(
        "INSERT INTO mailbox_credentials (mailbox_id, kind, key_id, nonce, ciphertext)"
        " VALUES ($1, 'password', 'k1', $2, $3)",
        broken,
        b"0" * 12,
        b"garbage" * 3,
    )
    assert await both.rotate(batch=2) == (5, [broken])
    new_only = PostgresSecretStore(pool, KeyRing.parse(K2))
    assert [await new_only.password(i) for i in ids] == [f"pw-{i}" for i in ids]


async def test_refresh_is_serialized_across_stores(pool):
    """Two processes (two stores, two pools' connections) want a refresh at once: one runs."""
    m = mid()
    now = datetime.now(UTC)
    store1 = PostgresSecretStore(pool, KeyRing.parse(K1))
    store2 = PostgresSecretStore(pool, KeyRing.parse(K1))
    await store1.put_oauth(
        m, OAuthTokens(SecretStr("at-1"), now, now - timedelta(hours=1), SecretStr("rt-1"))
    )
    calls = []

    async def decide(current: OAuthTokens) -> OAuthTokens | None:
        if current.access_token.get_secret_value() != "at-1":
            return None  # someone refreshed meanwhile
        calls.append(1)
        await asyncio.sleep(0.2)
        return OAuthTokens(SecretStr("at-2"), now + timedelta(hours=1), now, SecretStr("rt-2"))

    got = await asyncio.gather(store1.update_oauth(m, decide), store2.update_oauth(m, decide))
    assert len(calls) == 1
    assert {g.access_token.get_secret_value() for g in got if g} == {"at-2"}
    stored = await store2.oauth(m)
    assert stored and stored.refresh_token and stored.refresh_token.get_secret_value() == "rt-2"
