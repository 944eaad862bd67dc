"""Where a session gets its secrets: passwords and OAuth access tokens, refreshed when due.

Only one refresh per mailbox runs at a time: an in-process lock per mailbox, plus the store's
own lock across processes (PostgreSQL row lock in control.credentials). A token the server
rejected is refreshed once; if the store already holds a newer token, that one is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from producers.config import MailboxConfig
from producers.errors import ConfigurationError
from producers.oauth import OAuthTokens, needs_refresh

Refresher = Callable[[MailboxConfig, OAuthTokens], Awaitable[OAuthTokens]]
Decide = Callable[[OAuthTokens], Awaitable[OAuthTokens | None]]


class SecretStore(Protocol):
    async def password(self, mailbox_id: str) -> str | None: ...

    async def update_oauth(self, mailbox_id: str, decide: Decide) -> OAuthTokens | None:
        """Under the mailbox's lock: read the tokens, let `decide` return replacements (or None
        to keep them), store the replacement atomically, return what is current."""
        ...


class MemorySecretStore:
    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}
        self.tokens: dict[str, OAuthTokens] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def password(self, mailbox_id: str) -> str | None:
        return self.passwords.get(mailbox_id)

    async def update_oauth(self, mailbox_id: str, decide: Decide) -> OAuthTokens | None:
        async with self._locks.setdefault(mailbox_id, asyncio.Lock()):
            current = self.tokens.get(mailbox_id)
            if current is None:
                return None
            new = await decide(current)
            if new is not None:
                self.tokens[mailbox_id] = new
            return new or current


class Credentials:
    def __init__(
        self,
        store: SecretStore,
        refresher: Refresher,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._refresh = refresher
        self._now = now
        self._locks: dict[str, asyncio.Lock] = {}
        self.refreshes = 0

    async def password(self, cfg: MailboxConfig) -> str:
        if cfg.password is not None:
            return cfg.password.get_secret_value()
        stored = await self._store.password(cfg.mailbox_id)
        if stored is None:
            raise ConfigurationError(f"no password configured or stored for {cfg.mailbox_id}")
        return stored

    async def access_token(self, cfg: MailboxConfig, *, rejected: str | None = None) -> str:
        """A valid access token; refreshed when due or when `rejected` is the current one."""

        async def decide(current: OAuthTokens) -> OAuthTokens | None:
            if rejected is not None:
                if current.access_token.get_secret_value() != rejected:
                    return None  # another session or process already replaced it
            elif not needs_refresh(current, self._now()):
                return None
            self.refreshes += 1
            return await self._refresh(cfg, current)

        async with self._locks.setdefault(cfg.mailbox_id, asyncio.Lock()):
            tokens = await self._store.update_oauth(cfg.mailbox_id, decide)
        if tokens is None:
            raise ConfigurationError(f"no OAuth tokens stored for {cfg.mailbox_id}")
        return tokens.access_token.get_secret_value()
