"""OAuth2 for IMAP, the pure part: SASL payloads, token lifetimes, token-endpoint answers.

RFC 6749 section 6 (refresh_token grant), RFC 7628 (OAUTHBEARER), Google's XOAUTH2. The HTTP
call itself is in `_oauth_http`; the locking and storage in `tokens`.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

from pydantic import SecretStr

from producers.errors import (
    ConsentRequired,
    OAuthClientRejected,
    TokenEndpointUnavailable,
)

# Refresh this long before expiry at the latest (EmailEngine uses 30 s), or at half the
# lifetime for short-lived tokens, so a login never starts with a token about to lapse.
REFRESH_SKEW = timedelta(seconds=30)


@dataclasses.dataclass(frozen=True)
class OAuthTokens:
    access_token: SecretStr
    expires_at: datetime
    obtained_at: datetime
    refresh_token: SecretStr | None = None
    scope: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token.get_secret_value(),
            "refresh_token": self.refresh_token.get_secret_value() if self.refresh_token else None,
            "expires_at": self.expires_at.isoformat(),
            "obtained_at": self.obtained_at.isoformat(),
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> OAuthTokens:
        refresh = data.get("refresh_token")
        scope = data.get("scope")
        return cls(
            access_token=SecretStr(str(data["access_token"])),
            expires_at=datetime.fromisoformat(str(data["expires_at"])),
            obtained_at=datetime.fromisoformat(str(data.get("obtained_at") or data["expires_at"])),
            refresh_token=SecretStr(str(refresh)) if refresh else None,
            scope=str(scope) if scope else None,
        )


def needs_refresh(tokens: OAuthTokens, now: datetime) -> bool:
    lifetime = tokens.expires_at - tokens.obtained_at
    skew = min(REFRESH_SKEW, lifetime / 2)
    return now >= tokens.expires_at - skew


def xoauth2_payload(user: str, token: str) -> bytes:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer_payload(user: str, token: str, host: str, port: int) -> bytes:
    # RFC 7628 3.1 / RFC 5801 gs2 header: "," and "=" in the authzid are escaped.
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


def plain_payload(user: str, password: str) -> bytes:
    return f"\x00{user}\x00{password}".encode()


def parse_token_response(
    status: int, body: bytes, *, now: datetime, previous: OAuthTokens | None
) -> OAuthTokens:
    """Tokens from a token-endpoint answer, or the error that says what to do about it."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    error = str(data.get("error", ""))[:64]
    if status >= 500 or status == 429:
        raise TokenEndpointUnavailable(f"token endpoint answered HTTP {status}")
    if error == "invalid_grant":
        raise ConsentRequired(
            "the refresh token was revoked or has expired (invalid_grant): the mailbox owner "
            "must grant access again"
        )
    if error in ("invalid_client", "unauthorized_client") or status == 401:
        raise OAuthClientRejected(
            f"the token endpoint rejected our OAuth client ({error or f'HTTP {status}'}): "
            "check the client id and secret"
        )
    if status != 200 or "access_token" not in data:
        raise TokenEndpointUnavailable(
            f"token endpoint answered HTTP {status} {error or 'without an access token'}"
        )
    try:
        expires_in = float(data.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    refresh = data.get("refresh_token")
    return OAuthTokens(
        access_token=SecretStr(str(data["access_token"])),
        expires_at=now + timedelta(seconds=expires_in),
        obtained_at=now,
        # A provider that does not rotate sends no new refresh token: keep the old one.
        refresh_token=SecretStr(str(refresh))
        if refresh
        else (previous.refresh_token if previous else None),
        scope=str(data["scope"]) if data.get("scope") else (previous.scope if previous else None),
    )
