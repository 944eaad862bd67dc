"""The control-plane HTTP API (aiohttp): the original `/api/email/idle/*` endpoints plus mailbox
registration, JSON in and out, every request authenticated, tenants isolated.

Status answers merge the mailbox's desired state from PostgreSQL with its live state from the
status app (streams/, `STREAMS_URL`); when that app is unreachable `live` is null.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from control import mailboxes as mb
from control.auth import Principal, authenticate, create_credential
from control.credentials import PostgresSecretStore
from control.openapi import openapi_document
from producers.config import MailboxConfig
from producers.oauth import OAuthTokens

log = logging.getLogger(__name__)
PREFIX = "/api/email/idle"
MAX_BODY = 64 * 1024
EMAIL_TYPE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"

POOL = web.AppKey("pool", asyncpg.Pool)
SECRETS = web.AppKey("secrets", PostgresSecretStore)
STREAMS_URL = web.AppKey("streams_url", str)
HTTP = web.AppKey("http", aiohttp.ClientSession)


# ---- request bodies ------------------------------------------------------------------------
class EmailTypeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email_type: str = Field(pattern=f"^{EMAIL_TYPE}$")


class OAuthGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_token: SecretStr = Field(min_length=1)
    refresh_token: SecretStr | None = None
    expires_in: float = Field(default=3600, gt=0, le=10**7)


class MailboxBody(BaseModel):
    """A mailbox's settings as a tenant sends them; tenant and email type come from the URL."""

    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any]
    password: SecretStr | None = None
    oauth: OAuthGrant | None = None


class TenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(pattern=f"^{EMAIL_TYPE}$")
    name: str = Field(min_length=1, max_length=200)


# ---- helpers ---------------------------------------------------------------------------------
def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _body(request: web.Request, model: type[BaseModel]) -> BaseModel | web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _error(413, f"body larger than {MAX_BODY} bytes")
    try:
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        return _error(400, "body is not valid JSON")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        return _error(422, "invalid request body", details=details)


Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


def authenticated(
    handler: Handler, *, admin: bool = False, tenant: bool = True
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        principal = await authenticate(request.app[POOL], request.headers.get("Authorization"))
        if principal is None:
            return web.json_response(
                {"error": "missing or invalid bearer token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="idlewire"'},
            )
        if admin and not principal.is_admin:
            return _error(403, "admin credentials required")
        if tenant and principal.tenant_id is None:
            return _error(403, "this credential is not bound to a tenant")
        return await handler(request, principal)

    return wrapper


def _email_type(request: web.Request) -> str:
    return request.match_info["email_type"]


async def _live(request: web.Request, path: str) -> Any:
    """The status app's answer for the same query, with the caller's credentials; None if down."""
    base = request.app[STREAMS_URL]
    if not base:
        return None
    try:
        async with request.app[HTTP].get(
            base.rstrip("/") + path,
            headers={"Authorization": request.headers["Authorization"]},
            timeout=aiohttp.ClientTimeout(total=3),
        ) as resp:
            return await resp.json() if resp.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None


# ---- handlers --------------------------------------------------------------------------------
async def start_stop(request: web.Request, p: Principal, enabled: bool) -> web.StreamResponse:
    body = await _body(request, EmailTypeBody)
    if isinstance(body, web.Response):
        return body
    assert isinstance(body, EmailTypeBody) and p.tenant_id is not None
    row = await mb.set_enabled(request.app[POOL], p.tenant_id, body.email_type, enabled)
    if row is None:
        return _error(404, f"no mailbox of type {body.email_type!r}")
    return web.json_response(mb.public_view(row), status=202)


async def start(request: web.Request, p: Principal) -> web.StreamResponse:
    return await start_stop(request, p, True)


async def stop(request: web.Request, p: Principal) -> web.StreamResponse:
    return await start_stop(request, p, False)


async def status_one(request: web.Request, p: Principal) -> web.StreamResponse:
    assert p.tenant_id is not None
    row = await mb.get_mailbox(request.app[POOL], mb.mailbox_id(p.tenant_id, _email_type(request)))
    if row is None:
        return _error(404, f"no mailbox of type {_email_type(request)!r}")
    live = await _live(request, f"{PREFIX}/status/{row.email_type}")
    return web.json_response({**mb.public_view(row), "live": live})


async def status_all(request: web.Request, p: Principal) -> web.StreamResponse:
    assert p.tenant_id is not None
    rows = await mb.list_mailboxes(request.app[POOL], p.tenant_id)
    live = await _live(request, f"{PREFIX}/status")
    return web.json_response(
        {"tenant_id": p.tenant_id, "mailboxes": [mb.public_view(r) for r in rows], "live": live}
    )


async def admin_all(request: web.Request, p: Principal) -> web.StreamResponse:
    rows = await mb.list_mailboxes(request.app[POOL])
    tenants: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        tenants.setdefault(r.tenant_id, []).append(mb.public_view(r))
    live = await _live(request, f"{PREFIX}/admin/all")
    return web.json_response({"tenants": tenants, "live": live})


async def get_mailbox(request: web.Request, p: Principal) -> web.StreamResponse:
    assert p.tenant_id is not None
    row = await mb.get_mailbox(request.app[POOL], mb.mailbox_id(p.tenant_id, _email_type(request)))
    if row is None:
        return _error(404, f"no mailbox of type {_email_type(request)!r}")
    return web.json_response(mb.public_view(row))


async def put_mailbox(request: web.Request, p: Principal) -> web.StreamResponse:
    body = await _body(request, MailboxBody)
    if isinstance(body, web.Response):
        return body
    assert isinstance(body, MailboxBody) and p.tenant_id is not None
    forbidden = {"tenant_id", "email_type", "mailbox_id", "password"} & set(body.settings)
    if forbidden:
        return _error(
            422,
            f"settings may not contain {sorted(forbidden)}: they come from the "
            "URL, the credential or the password field",
        )
    email_type = _email_type(request)
    try:
        cfg = MailboxConfig.model_validate(
            {**body.settings, "tenant_id": p.tenant_id, "email_type": email_type}
        )
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(x) for x in e["loc"]), "problem": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False)
        ]
        return _error(422, "invalid mailbox settings", details=details)
    if body.password is not None and body.oauth is not None:
        return _error(422, "give either a password or OAuth tokens, not both")
    pool, secrets = request.app[POOL], request.app[SECRETS]
    row, created = await mb.put_mailbox(pool, cfg)
    if body.password is not None:
        await secrets.put_password(cfg.mailbox_id, body.password.get_secret_value())
    elif body.oauth is not None:
        now = datetime.now(UTC)
        await secrets.put_oauth(
            cfg.mailbox_id,
            OAuthTokens(
                access_token=body.oauth.access_token,
                refresh_token=body.oauth.refresh_token,
                expires_at=now + timedelta(seconds=body.oauth.expires_in),
                obtained_at=now,
            ),
        )
    return web.json_response(mb.public_view(row), status=201 if created else 200)


async def delete_mailbox(request: web.Request, p: Principal) -> web.StreamResponse:
    assert p.tenant_id is not None
    if not await mb.delete_mailbox(request.app[POOL], p.tenant_id, _email_type(request)):
        return _error(404, f"no mailbox of type {_email_type(request)!r}")
    return web.Response(status=204)


async def create_tenant(request: web.Request, p: Principal) -> web.StreamResponse:
    body = await _body(request, TenantBody)
    if isinstance(body, web.Response):
        return body
    assert isinstance(body, TenantBody)
    if not await mb.create_tenant(request.app[POOL], body.tenant_id, body.name):
        return _error(409, f"tenant {body.tenant_id!r} exists")
    token = await create_credential(request.app[POOL], tenant_id=body.tenant_id)
    return web.json_response({"tenant_id": body.tenant_id, "token": token}, status=201)


async def health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.StreamResponse:
    try:
        await request.app[POOL].fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError):
        return web.json_response({"status": "database unreachable"}, status=503)
    return web.json_response({"status": "ready"})


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document())


@web.middleware
async def errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except (asyncpg.PostgresConnectionError, OSError):
        log.exception("database unavailable")
        return _error(503, "database unavailable, try again")


def make_app(
    pool: asyncpg.Pool, secrets: PostgresSecretStore, streams_url: str = ""
) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[POOL], app[SECRETS], app[STREAMS_URL] = pool, secrets, streams_url

    async def http_client(app: web.Application) -> Any:
        app[HTTP] = aiohttp.ClientSession()
        yield
        await app[HTTP].close()

    app.cleanup_ctx.append(http_client)
    t = f"{{email_type:{EMAIL_TYPE}}}"
    app.router.add_post(f"{PREFIX}/start", authenticated(start))
    app.router.add_post(f"{PREFIX}/stop", authenticated(stop))
    app.router.add_get(f"{PREFIX}/status/{t}", authenticated(status_one))
    app.router.add_get(f"{PREFIX}/status", authenticated(status_all))
    app.router.add_get(f"{PREFIX}/admin/all", authenticated(admin_all, admin=True, tenant=False))
    app.router.add_get(f"{PREFIX}/mailboxes/{t}", authenticated(get_mailbox))
    app.router.add_put(f"{PREFIX}/mailboxes/{t}", authenticated(put_mailbox))
    app.router.add_delete(f"{PREFIX}/mailboxes/{t}", authenticated(delete_mailbox))
    app.router.add_post(
        "/api/admin/tenants", authenticated(create_tenant, admin=True, tenant=False)
    )
    app.router.add_get("/healthz", health)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/api/openapi.json", openapi)
    return app
