"""Spreading connection attempts so a server restart does not become a reconnect storm.

Dovecot re-admits hibernated sessions at about 80 per second and drops the rest (shared notes);
real providers throttle logins per IP. Every connection attempt to a server therefore passes a
gate: at most `concurrency` attempts in flight and at most `rate` starts per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable


@dataclasses.dataclass(slots=True)
class TokenBucket:
    """Pure rate limiter: `reserve(now)` books the next start and says how long to wait for it."""

    rate: float  # starts per second
    burst: float
    tokens: float | None = None  # None until first use: then a full bucket
    updated: float = 0.0

    def reserve(self, now: float) -> float:
        if self.tokens is None:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class ConnectGate:
    """Per-server (host, port) gate around connect + login + select."""

    def __init__(
        self,
        concurrency: int = 100,
        rate: float = 200.0,
        burst: float = 100.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._concurrency, self._rate, self._burst = concurrency, rate, burst
        self._monotonic, self._sleep = monotonic, sleep
        self._servers: dict[tuple[str, int], tuple[asyncio.Semaphore, TokenBucket]] = {}
        self.last_attempt = monotonic()  # when the last attempt entered any gate

    @contextlib.asynccontextmanager
    async def slot(self, host: str, port: int) -> AsyncIterator[None]:
        sem, bucket = self._servers.setdefault(
            (host.lower(), port),
            (asyncio.Semaphore(self._concurrency), TokenBucket(self._rate, self._burst)),
        )
        async with sem:
            self.last_attempt = self._monotonic()
            wait = bucket.reserve(self.last_attempt)
            if wait > 0:
                await self._sleep(wait)
            yield
