"""The control-plane API against the real PostgreSQL: every endpoint, every auth failure,
tenant isolation, malformed input (4xx with a message, never 5xx)."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control import db
from control.api import make_app
from control.auth import create_credential
from control.credentials import PostgresSecretStore
from control.crypto import KeyRing

pytestmark = pytest.mark.integration

SETTINGS = {"host": "imap.hotel.test", "username": "bookings@hotel.test"}


@pytest.fixture
async def api(fresh_db):  # type: ignore[no-untyped-def]
    pool = await db.connect(fresh_db)
    secrets = PostgresSecretStore(pool, KeyRing.parse(KeyRing.generate("k1")))
    client = TestClient(TestServer(make_app(pool, secrets)))
    await client.start_server()
    admin = await create_credential(pool, tenant_id=None, is_admin=True)
    client.pool, client.admin = pool, {"Authorization": f"Bearer {admin}"}  # type: ignore[attr-defined]
    yield client
    await client.close()
    await pool.close()


async def tenant(api, tenant_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = await api.post(
        "/api/admin/tenants", json={"tenant_id": tenant_id, "name": tenant_id}, headers=api.admin
    )
    assert r.status == 201, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def test_mailbox_lifecycle_and_outbox(api):
    acme = await tenant(api, "acme")
    r = await api.put(
        "/api/email/idle/mailboxes/reservations",
        json={"settings": SETTINGS, "password": "pw-acme"},
        headers=acme,
    )
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["mailbox_id"] == "acme:reservations" and body["enabled"] is False
    assert "pw-acme" not in json.dumps(body)
    r = await api.put(
        "/api/email/idle/mailboxes/reservations",
        json={"settings": {**SETTINGS, "folder": "Bookings"}},
        headers=acme,
    )
    assert r.status == 200 and (await r.json())["config"]["folder"] == "Bookings"
    r = await api.post("/api/email/idle/start", json={"email_type": "reservations"}, headers=acme)
    assert r.status == 202 and (await r.json())["enabled"] is True
    r = await api.get("/api/email/idle/status/reservations", headers=acme)
    assert r.status == 200 and (await r.json())["enabled"] is True
    r = await api.get("/api/email/idle/status", headers=acme)
    assert [m["email_type"] for m in (await r.json())["mailboxes"]] == ["reservations"]
    r = await api.post("/api/email/idle/stop", json={"email_type": "reservations"}, headers=acme)
    assert r.status == 202 and (await r.json())["enabled"] is False
    outbox = await api.pool.fetch("SELECT mailbox_id FROM command_outbox ORDER BY id")
    assert [o["mailbox_id"] for o in outbox] == ["acme:reservations"] * 2  # start, stop
    r = await api.delete("/api/email/idle/mailboxes/reservations", headers=acme)
    assert r.status == 204
    assert await api.pool.fetchval("SELECT count(*) FROM mailbox_credentials") == 0
    r = await api.get("/api/email/idle/mailboxes/reservations", headers=acme)
    assert r.status == 404


async def test_authentication_and_isolation(api):
    acme, other = await tenant(api, "acme"), await tenant(api, "other")
    await api.put(
        "/api/email/idle/mailboxes/reservations", json={"settings": SETTINGS}, headers=acme
    )
    for method, path in (
        ("GET", "/api/email/idle/status"),
        ("GET", "/api/email/idle/admin/all"),
        ("POST", "/api/email/idle/start"),
        ("GET", "/api/email/idle/status/reservations"),
    ):
        for headers in (
            {},
            {"Authorization": "Bearer nonsense"},
            {"Authorization": "Bearer iw_000000000000_" + "x" * 43},
        ):
            r = await api.request(method, path, headers=headers, json={})
            assert r.status == 401, (method, path, headers)
    # another tenant neither sees nor touches acme's mailbox
    assert (await api.get("/api/email/idle/status/reservations", headers=other)).status == 404
    r = await api.post("/api/email/idle/start", json={"email_type": "reservations"}, headers=other)
    assert r.status == 404
    assert (await api.delete("/api/email/idle/mailboxes/reservations", headers=other)).status == 404
    assert (await (await api.get("/api/email/idle/status", headers=other)).json())[
        "mailboxes"
    ] == []
    # admin-only and tenant-only routes
    assert (await api.get("/api/email/idle/admin/all", headers=acme)).status == 403
    r = await api.get("/api/email/idle/admin/all", headers=api.admin)
    assert r.status == 200 and list((await r.json())["tenants"]) == ["acme"]
    assert (await api.get("/api/email/idle/status", headers=api.admin)).status == 403
    r = await api.post("/api/admin/tenants", json={"tenant_id": "x", "name": "x"}, headers=acme)
    assert r.status == 403


@pytest.mark.parametrize(
    "body,status",
    [
        (b"{not json", 400),
        (b"[]", 422),
        (b'{"email_type": ""}', 422),
        (b'{"email_type": "a b"}', 422),
        (b'{"email_type": "ok", "extra": 1}', 422),
        (b"x" * 70000, 413),
    ],
)
async def test_malformed_start(api, body, status):
    acme = await tenant(api, "acme")
    r = await api.post(
        "/api/email/idle/start", data=body, headers={**acme, "Content-Type": "application/json"}
    )
    assert r.status == status
    assert "error" in await r.json()


@pytest.mark.parametrize(
    "body",
    [
        {"settings": {"host": "h"}},  # no username
        {"settings": {**SETTINGS, "port": 70000}},
        {"settings": {**SETTINGS, "security": "plain"}},
        {"settings": {**SETTINGS, "tenant_id": "other"}},
        {"settings": {**SETTINGS, "auth": "xoauth2"}},
        {"settings": SETTINGS, "password": "a", "oauth": {"access_token": "t"}},
        {"settings": SETTINGS, "oauth": {"access_token": "t", "expires_in": -1}},
    ],
)
async def test_invalid_mailbox_settings_say_what_is_wrong(api, body):
    acme = await tenant(api, "acme")
    r = await api.put("/api/email/idle/mailboxes/reservations", json=body, headers=acme)
    assert r.status == 422, await r.text()
    text = await r.text()
    assert "error" in json.loads(text) and "pw" not in text


async def test_openapi_and_health(api):
    doc = await (await api.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/api/email/idle/start" in doc["paths"]
    assert (await api.get("/healthz")).status == 200
    assert (await api.get("/readyz")).status == 200
