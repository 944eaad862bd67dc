"""Who is calling: an `Authorization: Bearer iw_…` header -> a control.auth Principal.

The same check as every other HTTP surface (control.auth against PostgreSQL), so revoking a
credential takes effect on the next request; nothing is cached.
"""

from __future__ import annotations

import asyncio
import logging

from control import auth, db
from control.auth import Principal

log = logging.getLogger(__name__)


class AuthUnavailable(Exception):
    """PostgreSQL could not be asked (retriable: the caller answers 503)."""


class Credentials:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._pool: db.Pool | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> db.Pool:
        # Created on first use, inside the worker's event loop (Faust owns the loop).
        async with self._lock:
            if self._pool is None:
                self._pool = await db.connect(self._url, min_size=1, max_size=4)
            return self._pool

    async def principal(self, header: str | None) -> Principal | None:
        if auth.parse_bearer(header) is None:
            return None  # malformed: no database round trip
        try:
            return await auth.authenticate(await self._connected(), header)
        except Exception as exc:  # asyncpg's errors are not importable here (control.db owns it)
            log.warning("credential check failed: %s", type(exc).__name__)
            raise AuthUnavailable() from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
