"""The authentication step of a session: password (LOGIN or AUTHENTICATE PLAIN) or OAuth2
(XOAUTH2 or OAUTHBEARER), with one refresh-and-retry when the server rejects a token."""

from __future__ import annotations

from typing import Protocol

from producers.config import AuthMethod, MailboxConfig
from producers.credentials import Credentials
from producers.errors import TokenRejected
from producers.oauth import oauthbearer_payload, plain_payload, xoauth2_payload


class AuthConnection(Protocol):
    def has_capability(self, name: str) -> bool: ...
    async def login(self, username: str, password: str) -> None: ...
    async def authenticate(
        self, mechanism: str, initial_response: bytes, *, final: bytes, username: str
    ) -> None: ...


async def authenticate(conn: AuthConnection, cfg: MailboxConfig, creds: Credentials) -> None:
    user = cfg.username
    if cfg.auth is AuthMethod.PASSWORD:
        password = await creds.password(cfg)
        if conn.has_capability("LOGINDISABLED"):
            await conn.authenticate(
                "PLAIN", plain_payload(user, password), final=b"", username=user
            )
        else:
            await conn.login(user, password)
        return
    token = await creds.access_token(cfg)
    try:
        await _bearer(conn, cfg, token)
    except TokenRejected:
        fresh = await creds.access_token(cfg, rejected=token)
        await _bearer(conn, cfg, fresh)  # rejected again: TokenRejected stops the mailbox


async def _bearer(conn: AuthConnection, cfg: MailboxConfig, token: str) -> None:
    assert cfg.port is not None
    if cfg.auth is AuthMethod.XOAUTH2:
        await conn.authenticate(
            "XOAUTH2", xoauth2_payload(cfg.username, token), final=b"", username=cfg.username
        )
    else:
        await conn.authenticate(
            "OAUTHBEARER",
            oauthbearer_payload(cfg.username, token, cfg.host, cfg.port),
            final=b"\x01",
            username=cfg.username,
        )
