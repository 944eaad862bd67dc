"""HTTP edge (aiohttp): turns requests into oauthlib calls and oauthlib's answers into responses.

Public endpoints: `POST /token`, `POST /revoke` (RFC 7009), `POST /introspect` (RFC 7662),
`GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration` (also served as
`/.well-known/oauth-authorization-server`, RFC 8414). Admin endpoints for tests (JSON in, JSON
out, loopback peers only): `POST /admin/clients`, `POST /admin/users`, `POST /admin/tokens`,
`POST /admin/revoke`.

oauthlib's calls are synchronous and the body is read before they start, so each token request
runs start to finish on the event loop without interleaving: validating a refresh token and
recording its rotation can never race another request using the same token.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from oauthlib.common import extract_params  # type: ignore[import-untyped]
from oauthlib.oauth2 import LegacyApplicationServer  # type: ignore[import-untyped]
from oauthlib.oauth2.rfc6749 import errors  # type: ignore[import-untyped]
from oauthlib.oauth2.rfc6749.errors import OAuth2Error  # type: ignore[import-untyped]

from ._keys import ALGORITHM, SigningKey
from ._store import Client, Store
from ._validator import MAX_LIFETIME, Settings, Validator, mint

log = logging.getLogger("oauth_server")

# Every request body is small (a form or a little JSON); anything bigger is refused unread.
MAX_BODY = 64 * 1024
# Client ids end up as directory names of Dovecot's key dictionary (for azp clients) and in logs.
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_USER_RE = re.compile(r"^[^\s\x00-\x1f:]{1,255}$")
_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
DEFAULT_REFRESH_LIFETIME = 30 * 86_400


@dataclass
class Context:
    server: LegacyApplicationServer
    validator: Validator
    store: Store
    key: SigningKey
    settings: Settings
    on_client_change: Callable[[], None]  # republish keys for azp clients


_CTX = web.AppKey("ctx", Context)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers={**_NO_STORE, **(headers or {})})


def _oauth_response(headers: dict[str, str], body: str | None, status: int) -> web.Response:
    headers = dict(headers)
    if status == 401:
        # oauthlib answers invalid_client with a `Bearer` challenge (RFC 6750's, for resource
        # servers); RFC 6749 §5.2 wants the scheme the client used: HTTP Basic here.
        headers["WWW-Authenticate"] = 'Basic realm="idlewire-oauth"'
    if body:
        headers.setdefault("Content-Type", "application/json")
        headers.update(_NO_STORE)
    return web.Response(body=(body or "").encode(), status=status, headers=headers)


def _error(exc: OAuth2Error) -> web.Response:
    return _oauth_response(dict(exc.headers), exc.json, exc.status_code)


OAuthCall = Callable[..., tuple[dict[str, str], str | None, int]]


async def _call_oauthlib(request: web.Request, endpoint: OAuthCall) -> web.Response:
    """Run one oauthlib endpoint on the form body. oauthlib turns most problems into an error
    response itself, but raises some (e.g. a query string on a POST): those become one too."""
    if request.content_type != _FORM:
        return _error(errors.InvalidRequestError(description=f"Content-Type must be {_FORM}"))
    body = await request.text()
    if body and extract_params(body) is None:
        # oauthlib silently ignores a body it cannot decode strictly (e.g. a raw space), and
        # then reports every parameter as missing: say what is actually wrong.
        return _error(
            errors.InvalidRequestError(description="body is not valid form-urlencoded data")
        )
    try:
        headers, text, status = endpoint(
            f"http://{request.host}{request.path_qs}",
            http_method="POST",
            body=body,
            headers=dict(request.headers),
        )
    except OAuth2Error as exc:
        return _error(exc)
    return _oauth_response(headers, text, status)


async def token(request: web.Request) -> web.Response:
    ctx = request.app[_CTX]
    if request.content_type == _FORM:
        # oauthlib would hand an unknown grant_type to its default (password) grant, which then
        # complains about a missing username; RFC 6749 §5.2 says unsupported_grant_type.
        grant_type = (await request.post()).get("grant_type")
        if isinstance(grant_type, str) and grant_type not in ctx.server.grant_types:
            return _error(errors.UnsupportedGrantTypeError())
    return await _call_oauthlib(request, ctx.server.create_token_response)


async def revoke(request: web.Request) -> web.Response:
    return await _call_oauthlib(request, request.app[_CTX].server.create_revocation_response)


async def introspect(request: web.Request) -> web.Response:
    return await _call_oauthlib(request, request.app[_CTX].server.create_introspect_response)


async def jwks(request: web.Request) -> web.Response:
    ctx = request.app[_CTX]
    return web.json_response({"keys": [ctx.key.jwk()]})


async def metadata(request: web.Request) -> web.Response:
    ctx = request.app[_CTX]
    base = f"http://{request.host}"
    return web.json_response(
        {
            "issuer": ctx.settings.issuer,
            "token_endpoint": f"{base}/token",
            "revocation_endpoint": f"{base}/revoke",
            "introspection_endpoint": f"{base}/introspect",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "grant_types_supported": ["password", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        }
    )


# --- admin ---------------------------------------------------------------------------------------


class _BadRequest(Exception):
    pass


@web.middleware
async def _admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/admin/"):
        return await handler(request)
    peer = request.remote or ""
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return _json({"error": "forbidden"}, status=403)
    try:
        return await handler(request)
    except _BadRequest as exc:
        return _json({"error": "invalid_request", "error_description": str(exc)}, status=400)


async def _admin_json(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    return data


def _str(data: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or (pattern and not pattern.match(value)):
        raise _BadRequest(
            f"{name!r} must be a non-empty string"
            + (" of [A-Za-z0-9._-]" if pattern is _CLIENT_ID_RE else "")
        )
    return value


def _int(data: dict[str, Any], name: str, default: int | None, maximum: int) -> int | None:
    value: object = data.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise _BadRequest(f"{name!r} must be an integer from 1 to {maximum}")
    return value


def _scopes(data: dict[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(s, str) and s and " " not in s for s in value):
        return tuple(value)
    raise _BadRequest(f"{name!r} must be a space-separated string or a list of strings")


async def admin_clients(request: web.Request) -> web.Response:
    """Create or replace a client. Body: client_id, client_secret, and optionally scope (allowed
    scopes; default "imap"), default_scope, grant_types, access_token_lifetime,
    refresh_token_lifetime, include_azp."""
    ctx = request.app[_CTX]
    data = await _admin_json(request)
    scopes = _scopes(data, "scope", ("imap",))
    default_scopes = _scopes(data, "default_scope", scopes)
    if not set(default_scopes) <= set(scopes):
        raise _BadRequest("default_scope must be a subset of scope")
    grant_types = _scopes(data, "grant_types", ("password", "refresh_token"))
    unknown = set(grant_types) - {"password", "refresh_token"}
    if unknown:
        raise _BadRequest(f"unsupported grant types {sorted(unknown)}")
    client = Client(
        client_id=_str(data, "client_id", _CLIENT_ID_RE),
        scopes=scopes,
        default_scopes=default_scopes,
        grant_types=grant_types,
        access_token_lifetime=_int(data, "access_token_lifetime", None, MAX_LIFETIME),
        refresh_token_lifetime=_int(
            data, "refresh_token_lifetime", DEFAULT_REFRESH_LIFETIME, 10 * 365 * 86_400
        )
        or DEFAULT_REFRESH_LIFETIME,
        include_azp=bool(data.get("include_azp", False)),
    )
    ctx.store.put_client(client, _str(data, "client_secret"))
    if client.include_azp:
        ctx.on_client_change()
    log.info("admin: client %s registered", client.client_id)
    return _json(
        {
            "client_id": client.client_id,
            "scope": " ".join(client.scopes),
            "default_scope": " ".join(client.default_scopes),
            "grant_types": list(client.grant_types),
            "access_token_lifetime": client.access_token_lifetime
            or ctx.settings.access_token_lifetime,
            "refresh_token_lifetime": client.refresh_token_lifetime,
            "include_azp": client.include_azp,
        }
    )


async def admin_users(request: web.Request) -> web.Response:
    """Create a user or change its password. Body: username, password."""
    ctx = request.app[_CTX]
    data = await _admin_json(request)
    username = _str(data, "username", _USER_RE)
    ctx.store.put_user(username, _str(data, "password"))
    log.info("admin: user %s registered", username)
    return _json({"username": username})


async def admin_tokens(request: web.Request) -> web.Response:
    """Issue a token pair without the user's password. Body: client_id, username, optionally
    scope and access_token_lifetime. Same response as POST /token."""
    ctx = request.app[_CTX]
    data = await _admin_json(request)
    client = ctx.store.client(_str(data, "client_id", _CLIENT_ID_RE))
    if client is None:
        raise _BadRequest("unknown client_id")
    username = _str(data, "username", _USER_RE)
    if not ctx.store.user_exists(username):
        raise _BadRequest("unknown username (POST /admin/users first)")
    scopes = _scopes(data, "scope", client.default_scopes)
    lifetime = _int(data, "access_token_lifetime", None, MAX_LIFETIME)
    try:
        issued = mint(ctx.server, ctx.validator, client, username, list(scopes), lifetime)
    except ValueError as exc:
        raise _BadRequest(str(exc)) from None
    return _json(issued)


async def admin_revoke(request: web.Request) -> web.Response:
    """Revoke every refresh token of a user and/or client. Body: username and/or client_id."""
    ctx = request.app[_CTX]
    data = await _admin_json(request)
    username = data.get("username")
    client_id = data.get("client_id")
    if not isinstance(username, str | None) or not isinstance(client_id, str | None):
        raise _BadRequest("username and client_id must be strings")
    if username is None and client_id is None:
        raise _BadRequest("give username and/or client_id")
    revoked = ctx.store.revoke_matching(username, client_id)
    log.info("admin: revoked %d refresh tokens user=%s client_id=%s", revoked, username, client_id)
    return _json({"revoked": revoked})


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _json({"error": "server_error"}, status=500)


def make_app(ctx: Context) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors, _admin_guard])
    app[_CTX] = ctx
    app.router.add_post("/token", token)
    app.router.add_post("/revoke", revoke)
    app.router.add_post("/introspect", introspect)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/.well-known/openid-configuration", metadata)
    app.router.add_get("/.well-known/oauth-authorization-server", metadata)
    app.router.add_post("/admin/clients", admin_clients)
    app.router.add_post("/admin/users", admin_users)
    app.router.add_post("/admin/tokens", admin_tokens)
    app.router.add_post("/admin/revoke", admin_revoke)
    return app
