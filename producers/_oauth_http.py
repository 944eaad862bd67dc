"""The token-endpoint edge: the refresh_token grant over HTTP (the only aiohttp user here)."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp

from producers.errors import TokenEndpointUnavailable
from producers.oauth import OAuthTokens, parse_token_response

TIMEOUT = aiohttp.ClientTimeout(total=15)
MAX_BODY = 64 * 1024


class TokenEndpoint:
    """One shared HTTP client per process."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def refresh(
        self,
        token_url: str,
        *,
        client_id: str,
        client_secret: str | None,
        tokens: OAuthTokens,
        scopes: tuple[str, ...] = (),
    ) -> OAuthTokens:
        if tokens.refresh_token is None:
            raise TokenEndpointUnavailable("no refresh token stored for this mailbox")
        form = {
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token.get_secret_value(),
            "client_id": client_id,
        }
        if client_secret is not None:
            form["client_secret"] = client_secret
        if scopes:
            form["scope"] = " ".join(scopes)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        try:
            async with self._session.post(token_url, data=form) as resp:
                body = await resp.content.read(MAX_BODY)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TokenEndpointUnavailable(
                f"token endpoint unreachable: {type(exc).__name__}"
            ) from exc
        return parse_token_response(status, body, now=datetime.now(UTC), previous=tokens)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
