"""The outbox relay: publishes committed mailbox commands to Kafka in order, then marks them.

At-least-once: a crash after Kafka's acknowledgement and before `sent_at` is written publishes
the row again on restart; consumers ignore commands whose config_version they have seen. Any
number of relays may run: `FOR UPDATE SKIP LOCKED` gives each row to one of them at a time, and
rows of one mailbox stay in order because a relay takes the oldest unsent rows first and holds
their locks until Kafka acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from aiokafka import AIOKafkaProducer

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        topic: str,
        batch: int = 500,
        poll_seconds: float = 1.0,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._topic = topic
        self._batch = batch
        self._poll = poll_seconds
        self._wake = asyncio.Event()

    async def drain_once(self) -> int:
        """Publish one batch of unsent rows; returns how many were sent."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, mailbox_id, payload FROM command_outbox WHERE sent_at IS NULL"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch,
            )
            if not rows:
                return 0
            futures = [
                await self._producer.send(
                    self._topic, bytes(r["payload"]), key=r["mailbox_id"].encode()
                )
                for r in rows
            ]
            await asyncio.gather(*futures)
            await conn.execute(
                "UPDATE command_outbox SET sent_at = now() WHERE id = ANY($1)",
                [r["id"] for r in rows],
            )
            return len(rows)

    async def run(self) -> None:
        """Drain on every NOTIFY and at least every `poll_seconds`, until cancelled."""
        listener = await self._pool.acquire()
        await listener.add_listener("idlewire_outbox", lambda *_: self._wake.set())
        try:
            while True:
                try:
                    while await self.drain_once():
                        pass
                except Exception as exc:  # Kafka or PostgreSQL hiccup: rows stay unsent
                    log.warning("outbox relay: %s; retrying", type(exc).__name__)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll):
                        await self._wake.wait()
        finally:
            await self._pool.release(listener)  # release resets the connection's listeners
