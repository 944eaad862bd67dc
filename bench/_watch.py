"""Separate aiokafka consumers in the benchmark process: per-mailbox states from the state topic,
and the moment each NewMailDetected record becomes readable on the new-mail topic."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer

from schemas.codec import decode
from schemas.events import ConnectionState, ConnectionStateChanged, NewMailDetected


@dataclasses.dataclass
class ErrorSeen:
    mailbox_id: str
    occurred_at: float  # wall clock (producer's)
    error_class: str | None
    reason: str | None
    attempt: int
    previous_state: str  # idle: an established session was lost; else: an attempt failed


class StateTracker:
    """Current state of every mailbox and when it last entered `idle`, from the state topic."""

    def __init__(self, mailbox_ids: list[str]) -> None:
        self.expected = set(mailbox_ids)
        self.state: dict[str, ConnectionState] = {}
        self.idle_at: dict[str, float] = {}  # wall clock of the last move into idle
        self.first_at: dict[str, float] = {}  # wall clock of the first event
        self.errors: list[ErrorSeen] = []
        self.events = 0
        self.counts: Counter[str] = Counter()

    def feed(self, event: ConnectionStateChanged) -> None:
        mb = event.mailbox_id
        if mb not in self.expected:
            return
        self.events += 1
        at = event.occurred_at.timestamp()
        self.first_at.setdefault(mb, at)
        self.counts[event.state.value] += 1
        # Partitions are keyed by mailbox, so one mailbox's events arrive in order.
        self.state[mb] = event.state
        if event.state is ConnectionState.IDLE:
            self.idle_at[mb] = at
        elif event.state is ConnectionState.ERROR:
            self.errors.append(
                ErrorSeen(
                    mb,
                    at,
                    event.error_class,
                    event.reason,
                    event.attempt,
                    event.previous_state.value if event.previous_state else "",
                )
            )

    def idle_since(self, wall: float) -> int:
        """How many expected mailboxes are in idle now, having entered it at or after `wall`."""
        return sum(
            1
            for mb, s in self.state.items()
            if s is ConnectionState.IDLE and self.idle_at.get(mb, 0.0) >= wall
        )

    def last_idle_at(self) -> float:
        return max(self.idle_at.values(), default=0.0)

    def stopped(self) -> list[ErrorSeen]:
        """Errors that end a mailbox for good (the producer will not retry them)."""
        stop = {"AuthenticationFailed", "ConfigurationError", "TLSFailed"}
        return [e for e in self.errors if e.error_class in stop]


@dataclasses.dataclass
class MailSeen:
    t_read: float  # monotonic, when the record was returned to this consumer
    detected_at: float  # wall clock, the producer's detected_at


class Watch:
    """Two consumers without a group (all partitions, from the beginning of fresh topics)."""

    def __init__(self, bootstrap: str, state_topic: str, mail_topic: str, tracker: StateTracker):
        self.tracker = tracker
        self.mail: dict[tuple[str, int], MailSeen] = {}
        self.mail_waiters: dict[tuple[str, int], asyncio.Future[MailSeen]] = {}
        self.decode_errors = 0
        self._consumers = {
            name: AIOKafkaConsumer(
                topic,
                bootstrap_servers=bootstrap,
                group_id=None,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            )
            for name, topic in (("state", state_topic), ("mail", mail_topic))
        }
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for c in self._consumers.values():
            await c.start()
        self._tasks = [
            asyncio.create_task(self._loop(self._consumers["state"], self._on_state)),
            asyncio.create_task(self._loop(self._consumers["mail"], self._on_mail)),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for c in self._consumers.values():
            await c.stop()

    async def _loop(self, consumer: AIOKafkaConsumer, handle: Any) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            t_read = time.monotonic()
            for records in batch.values():
                for r in records:
                    try:
                        event = decode(r.value)
                    except ValueError:
                        self.decode_errors += 1
                        continue
                    handle(event, t_read)

    def _on_state(self, event: Any, t_read: float) -> None:
        if isinstance(event, ConnectionStateChanged):
            self.tracker.feed(event)

    def _on_mail(self, event: Any, t_read: float) -> None:
        if not isinstance(event, NewMailDetected):
            return
        key = (event.mailbox_id, event.uid)
        if key in self.mail:
            return  # an at-least-once duplicate: the first copy counts
        seen = MailSeen(t_read, event.detected_at.timestamp())
        self.mail[key] = seen
        fut = self.mail_waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(seen)

    def expect_mail(self, mailbox_id: str, uid: int) -> asyncio.Future[MailSeen]:
        fut: asyncio.Future[MailSeen] = asyncio.get_running_loop().create_future()
        key = (mailbox_id, uid)
        if key in self.mail:
            fut.set_result(self.mail[key])
        else:
            self.mail_waiters[key] = fut
        return fut
