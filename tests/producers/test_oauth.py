"""OAuth2 without a network: payloads, token-endpoint answers, refresh policy and locking."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from producers.config import MailboxConfig
from producers.credentials import Credentials, MemorySecretStore
from producers.errors import (
    ConsentRequired,
    OAuthClientRejected,
    TokenEndpointUnavailable,
    TokenRejected,
)
from producers.login import authenticate
from producers.oauth import (
    OAuthTokens,
    needs_refresh,
    oauthbearer_payload,
    parse_token_response,
    xoauth2_payload,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CFG = MailboxConfig(
    tenant_id="t",
    email_type="r",
    host="imap.test",
    port=993,
    username="a,b=c@x.test",
    auth="oauthbearer",
    oauth_token_url="https://auth.test/token",
    oauth_client_id="cid",
)


def tokens(access: str = "at-1", lifetime: float = 3600, at: datetime = T0) -> OAuthTokens:
    return OAuthTokens(SecretStr(access), at + timedelta(seconds=lifetime), at, SecretStr("rt-1"))


def test_sasl_payloads():
    assert xoauth2_payload("u@x", "T") == b"user=u@x\x01auth=Bearer T\x01\x01"
    assert oauthbearer_payload("a,b=c@x", "T", "imap.test", 993) == (
        b"n,a=a=2Cb=3Dc@x,\x01host=imap.test\x01port=993\x01auth=Bearer T\x01\x01"
    )


def test_refresh_timing():
    t = tokens(lifetime=3600)
    assert not needs_refresh(t, T0 + timedelta(seconds=3569))
    assert needs_refresh(t, T0 + timedelta(seconds=3571))
    short = tokens(lifetime=10)  # short-lived: refresh at half-life
    assert not needs_refresh(short, T0 + timedelta(seconds=4)) and needs_refresh(
        short, T0 + timedelta(seconds=5)
    )


def test_token_response_rotation_and_errors():
    prev = tokens()
    new = parse_token_response(
        200,
        b'{"access_token":"at-2","expires_in":60,"refresh_token":"rt-2"}',
        now=T0,
        previous=prev,
    )
    assert new.access_token.get_secret_value() == "at-2"
    assert new.refresh_token and new.refresh_token.get_secret_value() == "rt-2"
    assert new.expires_at == T0 + timedelta(seconds=60)
    kept = parse_token_response(200, b'{"access_token":"at-3"}', now=T0, previous=prev)
    assert kept.refresh_token == prev.refresh_token
    with pytest.raises(ConsentRequired, match="grant access again"):
        parse_token_response(400, b'{"error":"invalid_grant"}', now=T0, previous=prev)
    with pytest.raises(OAuthClientRejected):
        parse_token_response(401, b'{"error":"invalid_client"}', now=T0, previous=prev)
    for status, body in ((503, b""), (200, b"<html>"), (400, b'{"error":"x"}')):
        with pytest.raises(TokenEndpointUnavailable):
            parse_token_response(status, body, now=T0, previous=prev)
    assert "rt-1" not in repr(prev) and "at-1" not in repr(prev)


async def test_one_refresh_for_many_concurrent_needs():
    store = MemorySecretStore()
    store.tokens["t:r"] = tokens(lifetime=10)
    calls = 0

    async def refresh(cfg, current):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return tokens("at-2", at=T0 + timedelta(seconds=9))

    creds = Credentials(store, refresh, now=lambda: T0 + timedelta(seconds=9))
    got = await asyncio.gather(*(creds.access_token(CFG) for _ in range(20)))
    assert set(got) == {"at-2"} and calls == 1


class FakeAuthConn:
    def __init__(self, accept: set[str]) -> None:
        self.accept = accept
        self.tried: list[str] = []

    def has_capability(self, name: str) -> bool:
        return False

    async def login(self, username: str, password: str) -> None:
        raise AssertionError("no LOGIN for OAuth")

    async def authenticate(self, mechanism, initial_response, *, final, username):  # type: ignore[no-untyped-def]
        token = initial_response.split(b"auth=Bearer ")[1].split(b"\x01")[0].decode()
        self.tried.append(token)
        if token not in self.accept:
            raise TokenRejected("OAUTHBEARER rejected")


async def test_rejected_token_is_refreshed_once_then_stops():
    store = MemorySecretStore()
    store.tokens["t:r"] = tokens("at-1")
    n = 0

    async def refresh(cfg, current):  # type: ignore[no-untyped-def]
        nonlocal n
        n += 1
        return tokens(f"at-{n + 1}")

    creds = Credentials(store, refresh, now=lambda: T0)
    ok = FakeAuthConn(accept={"at-2"})
    await authenticate(ok, CFG, creds)
    assert ok.tried == ["at-1", "at-2"]
    never = FakeAuthConn(accept=set())
    with pytest.raises(TokenRejected):
        await authenticate(never, CFG, creds)
    assert never.tried == ["at-2", "at-3"] and n == 2  # one refresh per rejection, no loop
