"""The Kafka edge: one idempotent producer per process (acks=all), keyed by mailbox.

Every record carries the encoded event (Avro single-object encoding), the mailbox id as key so
a mailbox's events stay ordered in one partition, and headers naming the event type and id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from producers.errors import IdlewireError
from producers.telemetry import context_headers
from schemas.codec import encode
from schemas.events import ConnectionStateChanged, Event, MailboxResynced, NewMailDetected

log = logging.getLogger(__name__)


class PublishFailed(IdlewireError):
    """Kafka did not acknowledge in time. The checkpoint stays put; the batch is retried."""


def _headers(event: Event) -> list[tuple[str, bytes]]:
    return [
        ("event_type", event.SCHEMA.encode()),
        ("event_id", event.event_id.encode()),
        ("tenant_id", event.tenant_id.encode()),
        *context_headers(),
    ]


async def ensure_topics(
    bootstrap: str, topics: Sequence[str], partitions: int = 6, *, compacted: bool = False
) -> None:
    """Create the topics if they do not exist yet (replication factor 1 on the local stack)."""
    configs = {"cleanup.policy": "compact"} if compacted else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="idlewire-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(t, num_partitions=partitions, replication_factor=1, topic_configs=configs)
            for t in topics
            if t not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


class KafkaPublisher:
    def __init__(
        self,
        bootstrap: str,
        *,
        new_mail_topic: str,
        state_topic: str,
        client_id: str,
        request_timeout_ms: int = 30000,
    ) -> None:
        self.new_mail_topic = new_mail_topic
        self.state_topic = state_topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=request_timeout_ms,
            linger_ms=0,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is buffered, then close."""
        await self._producer.stop()

    def _topic(self, event: Event) -> str:
        return (
            self.state_topic if isinstance(event, ConnectionStateChanged) else self.new_mail_topic
        )

    async def publish_all(self, events: Sequence[NewMailDetected | MailboxResynced]) -> None:
        """Send all, wait until Kafka acknowledged every one; raise PublishFailed otherwise."""
        try:
            futures = [
                await self._producer.send(self._topic(e), encode(e), key=e.key, headers=_headers(e))
                for e in events
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise PublishFailed(f"Kafka did not acknowledge: {type(exc).__name__}") from exc

    async def publish_state(self, event: ConnectionStateChanged) -> None:
        """Enqueue a state event; ordering per mailbox holds, acknowledgement is not awaited."""
        try:
            fut = await self._producer.send(
                self.state_topic, encode(event), key=event.key, headers=_headers(event)
            )
        except KafkaError as exc:
            log.warning(
                "state event not enqueued: %s",
                type(exc).__name__,
                extra={"tenant_id": event.tenant_id, "mailbox_id": event.mailbox_id},
            )
            return
        fut.add_done_callback(_log_failure)


def _log_failure(fut: asyncio.Future[object]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("state event not acknowledged: %s", type(fut.exception()).__name__)
