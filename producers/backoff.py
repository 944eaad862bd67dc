"""Reconnect policy: capped exponential backoff with full jitter, and when to reset it.

Pure: the caller passes the clock readings and the random source. Lessons from peers: reset the
attempt counter only after a connection has stayed up for a while, or a server that drops every
connection right after login gets hammered (docs/decisions.md).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable


@dataclasses.dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_seconds: float = 5.0  # reconnect_delay_seconds
    cap_seconds: float = 300.0
    factor: float = 2.0
    max_attempts: int = 10  # max_reconnect_attempts; after that, slow retry
    slow_retry_seconds: float = 900.0
    stable_after_seconds: float = 300.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before connection attempt number `attempt` (1-based) after a failure."""
        if attempt > self.max_attempts:
            return self.slow_retry_seconds * (0.5 + rand() / 2)
        ceiling = min(self.cap_seconds, self.base_seconds * self.factor ** (attempt - 1))
        # "equal jitter": never less than half the ceiling, so a storm still spreads but a single
        # mailbox does not retry instantly.
        return ceiling / 2 + rand() * ceiling / 2

    def exhausted(self, attempt: int) -> bool:
        return attempt > self.max_attempts


@dataclasses.dataclass(slots=True)
class AttemptCounter:
    """Counts failed attempts; forgets them once a connection has been up `stable_after_seconds`."""

    policy: BackoffPolicy
    attempt: int = 0
    up_since: float | None = None

    def connected(self, now: float) -> None:
        self.up_since = now

    def failed(self, now: float) -> int:
        if self.up_since is not None and now - self.up_since >= self.policy.stable_after_seconds:
            self.attempt = 0
        self.up_since = None
        self.attempt += 1
        return self.attempt
