"""The Kafka edge of the status app outside Faust: source topic creation and key partitioning."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2


async def ensure_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    Faust creates only topics declared internal. A source topic that does not exist when the
    worker subscribes is auto-created by the broker a few ms after Faust's assignment, and the
    worker then idles forever ("Topic ... not found in cluster metadata"), so the worker creates
    its source topics before Faust starts.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="idlewire-streams-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
        return missing
    finally:
        await admin.close()


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java's and aiokafka's: murmur2) picks for key.

    Faust sends the repartition records with that partitioner, so this is where a tenant's rows
    live. (Faust's Router.key_store hashes the key as the *changelog* serializes it, which for a
    str-keyed table is JSON, b'"acme"': a different partition. docs/streams.md, findings.)
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
