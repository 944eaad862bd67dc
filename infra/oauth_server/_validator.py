"""The policy oauthlib asks the application for, and the JWT access tokens it hands out.

Grants: `password` (how a test gets the FIRST token pair of a user it registered) and
`refresh_token` (RFC 6749 §6). Client authentication: `client_secret_basic` or
`client_secret_post` (RFC 6749 §2.3.1), never both in one request.

Refresh tokens are opaque, bound to their client, and rotated on every use. A rotated token that
comes back is a replay (RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP §4.14): the whole grant (every
token of its family) is revoked and the request fails with `invalid_grant`, as Auth0, Okta and
Google-style providers do. Access tokens are RS256 JWTs that Dovecot's oauth2 passdb validates
locally: header `typ: JWT` and `kid`; claims `iss sub aud exp iat jti client_id scope` (RFC 9068's
set; `typ` stays `JWT` rather than `at+jwt` because Dovecot 2.3 insists on it) and `azp` only for
clients registered with `include_azp` (Dovecot then looks the key up under `<azp>/` instead of
`default/`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import jwt
from oauthlib.common import Request  # type: ignore[import-untyped]  # no stubs
from oauthlib.oauth2 import LegacyApplicationServer, RequestValidator  # type: ignore[import-untyped]
from oauthlib.oauth2.rfc6749 import errors  # type: ignore[import-untyped]

from ._keys import ALGORITHM, SigningKey
from ._store import Client, RefreshToken, Store, token_hash

log = logging.getLogger("oauth_server")

# Non-standard form parameter of this test server: the access-token lifetime (seconds) for this
# one request, so a test can ask for a 3 s token without registering another client.
LIFETIME_PARAM = "access_token_lifetime"
MAX_LIFETIME = 86_400


@dataclass(frozen=True)
class Settings:
    issuer: str
    audience: str
    access_token_lifetime: int  # server default; clients and requests may override it


def _short(token: str) -> str:
    """A log-safe handle for a token: enough to correlate lines, useless to an attacker."""
    return token_hash(token)[:10]


class Validator(RequestValidator):  # type: ignore[misc]  # oauthlib ships no type hints
    def __init__(self, store: Store, settings: Settings, key: SigningKey) -> None:
        self.store = store
        self.settings = settings
        self._public_key = key.private.public_key()

    # --- clients ---

    def client_authentication_required(self, request: Request, *args: Any, **kw: Any) -> bool:
        return True  # every client is confidential

    def authenticate_client(self, request: Request, *args: Any, **kw: Any) -> bool:
        credentials = _client_credentials(request)
        if credentials is None:
            log.info("client authentication failed: no or ambiguous credentials")
            return False
        client_id, secret = credentials
        client = self.store.authenticate_client(client_id, secret)
        if client is None:
            log.info("client authentication failed client_id=%s", client_id)
            return False
        request.client = client
        request.client_id = client_id
        return True

    def authenticate_client_id(self, client_id: str, request: Request, *a: Any, **k: Any) -> bool:
        return False  # no public clients

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Client, request: Request, *a: Any, **k: Any
    ) -> bool:
        return grant_type in client.grant_types

    def validate_scopes(
        self, client_id: str, scopes: list[str], client: Client, request: Request, *a: Any, **k: Any
    ) -> bool:
        return set(scopes) <= set(client.scopes)

    def get_default_scopes(self, client_id: str, request: Request, *a: Any, **k: Any) -> list[str]:
        client: Client = request.client
        return list(client.default_scopes)

    # --- users ---

    def validate_user(
        self, username: str, password: str, client: Client, request: Request, *a: Any, **k: Any
    ) -> bool:
        if not self.store.authenticate_user(username, password):
            log.info("password grant rejected client_id=%s user=%s", client.client_id, username)
            return False
        request.user = username
        return True

    # --- refresh tokens ---

    def validate_refresh_token(
        self, refresh_token: str, client: Client, request: Request, *a: Any, **k: Any
    ) -> bool:
        record = self.store.refresh_token(refresh_token)
        reason = _refresh_problem(record, client, self.store)
        if record is not None and reason == "reused":
            revoked = self.store.revoke_family(record.family)
            log.warning(
                "refresh token replayed: grant revoked client_id=%s user=%s family=%s revoked=%d",
                record.client_id,
                record.username,
                record.family[:10],
                revoked,
            )
        if reason is not None:
            log.info(
                "refresh rejected reason=%s client_id=%s token=%s",
                reason,
                client.client_id,
                _short(refresh_token),
            )
            return False
        assert record is not None
        request.user = record.username
        request.refresh_record = record
        return True

    def get_original_scopes(self, refresh_token: str, request: Request, *a: Any, **k: Any) -> Any:
        record: RefreshToken = request.refresh_record
        return list(record.scopes)

    def rotate_refresh_token(self, request: Request) -> bool:
        return True

    def save_bearer_token(self, token: dict[str, Any], request: Request, *a: Any, **k: Any) -> str:
        client: Client = request.client
        refresh = token.get("refresh_token")
        replaces = request.refresh_record if request.grant_type == "refresh_token" else None
        if refresh:
            self.store.add_refresh_token(
                refresh,
                client_id=client.client_id,
                username=request.user,
                scopes=tuple(request.scopes or ()),
                lifetime=client.refresh_token_lifetime,
                replaces=replaces,
            )
        log.info(
            "issued grant=%s client_id=%s user=%s expires_in=%s refresh=%s%s",
            request.grant_type,
            client.client_id,
            request.user,
            token.get("expires_in"),
            _short(refresh) if refresh else "-",
            f" (rotated {replaces.token_hash[:10]})" if replaces else "",
        )
        return ""

    def revoke_token(
        self, token: str, token_type_hint: str | None, request: Request, *a: Any, **k: Any
    ) -> None:
        record = self.store.refresh_token(token)
        client: Client = request.client
        if record is None:
            log.info("revoke: unknown token (RFC 7009: still 200) client_id=%s", client.client_id)
            return
        if record.client_id != client.client_id:
            log.warning(
                "revoke: token of client %s presented by %s: ignored",
                record.client_id,
                client.client_id,
            )
            return
        revoked = self.store.revoke_family(record.family)
        log.info(
            "revoked grant client_id=%s user=%s family=%s tokens=%d",
            record.client_id,
            record.username,
            record.family[:10],
            revoked,
        )

    def introspect_token(
        self, token: str, token_type_hint: str | None, request: Request, *a: Any, **k: Any
    ) -> dict[str, Any] | None:
        if token.count(".") == 2:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key=self._public_key,
                    algorithms=[ALGORITHM],
                    audience=self.settings.audience,
                    issuer=self.settings.issuer,
                )
            except jwt.PyJWTError:
                return None
            return {**claims, "token_type": "Bearer", "username": claims.get("sub")}
        record = self.store.refresh_token(token)
        if record is None or _refresh_problem(record, request.client, self.store) is not None:
            return None
        return {
            "token_type": "refresh_token",
            "client_id": record.client_id,
            "username": record.username,
            "sub": record.username,
            "scope": " ".join(record.scopes),
            "iat": int(record.issued_at),
            "exp": int(record.expires_at),
        }


def _client_credentials(request: Request) -> tuple[str, str] | None:
    """(client_id, secret) from HTTP Basic or from the form body; None if absent or both."""
    header = request.headers.get("Authorization", "")
    in_body = request.client_secret is not None
    if header[:6].lower() == "basic ":
        if in_body:
            return None  # RFC 6749 §2.3: one authentication method per request
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            return None
        # §2.3.1: both are form-urlencoded before being put into the Basic credentials.
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        if request.client_id and request.client_id != client_id:
            return None
        return client_id, secret
    if request.client_id and in_body:
        return request.client_id, request.client_secret
    return None


def _refresh_problem(record: RefreshToken | None, client: Client, store: Store) -> str | None:
    if record is None:
        return "unknown"
    if record.client_id != client.client_id:
        return "other-client"
    if record.revoked_at is not None:
        return "revoked"
    if record.used_at is not None:
        return "reused"
    if record.expires_at <= time.time():
        return "expired"
    if not store.user_exists(record.username):
        return "user-deleted"
    return None


def _lifetime_override(request: Request) -> None:
    """pre_token validator: parse the test-only lifetime parameter before anything is issued."""
    raw = dict(request.decoded_body or []).get(LIFETIME_PARAM)
    request.lifetime_override = None
    if raw is None:
        return
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIFETIME:
        raise errors.InvalidRequestError(
            description=f"{LIFETIME_PARAM} must be an integer from 1 to {MAX_LIFETIME}",
            request=request,
        )
    request.lifetime_override = value


def build_server(
    store: Store, key: SigningKey, settings: Settings
) -> tuple[LegacyApplicationServer, Validator]:
    validator = Validator(store, settings, key)

    def lifetime(request: Request) -> int:
        override: int | None = getattr(request, "lifetime_override", None)
        if override is not None:
            return override
        client: Client = request.client
        return client.access_token_lifetime or settings.access_token_lifetime

    def access_token(request: Request) -> str:
        client: Client = request.client
        # Whole seconds, rounded down: Dovecot rejects a token whose iat is after its own clock.
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": settings.issuer,
            "sub": request.user,
            "aud": settings.audience,
            "iat": now,
            "exp": now + int(request.expires_in),
            "jti": uuid.uuid4().hex,
            "client_id": client.client_id,
            "scope": " ".join(request.scopes or ()),
        }
        if client.include_azp:
            claims["azp"] = client.client_id
        return jwt.encode(
            claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
        )

    def refresh_token(request: Request) -> str:
        return secrets.token_urlsafe(32)  # opaque, 256 bits; only its SHA-256 is stored

    server = LegacyApplicationServer(
        validator,
        token_generator=access_token,
        token_expires_in=lifetime,
        refresh_token_generator=refresh_token,
    )
    for grant in (server.password_grant, server.refresh_grant):
        grant.custom_validators.pre_token.append(_lifetime_override)
    # Access tokens are JWTs that Dovecot checks by itself: they cannot be recalled, so RFC 7009
    # §2.2.1's unsupported_token_type is the honest answer to a hint of access_token.
    server.supported_token_types = ("refresh_token",)
    return server, validator


def mint(
    server: LegacyApplicationServer,
    validator: Validator,
    client: Client,
    username: str,
    scopes: list[str] | None,
    lifetime: int | None,
) -> dict[str, Any]:
    """Issue a token pair as if the user had consented (the admin API's shortcut for tests that
    need a refresh token but have no reason to handle the user's password)."""
    body = {LIFETIME_PARAM: str(lifetime)} if lifetime is not None else {}
    request = Request("http://admin/tokens", http_method="POST", body=body)
    request.client = client
    request.client_id = client.client_id
    request.user = username
    request.grant_type = "password"
    request.scopes = scopes or list(client.default_scopes)
    if not set(request.scopes) <= set(client.scopes):
        raise ValueError(f"scopes {request.scopes} not allowed for client {client.client_id}")
    _lifetime_override(request)
    token: dict[str, Any] = dict(server.bearer.create_token(request, refresh_token=True))
    validator.save_token(token, request)
    return token
