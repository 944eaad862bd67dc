"""Faust's aiokafka transport with one fix: "seek to committed" also rewinds partitions that have
no committed offset yet.

Faust (0.15.3) fetches from a partition as soon as it is assigned, but drops the fetched records
when the partition is not "active" yet (paused for table recovery, or a flow stop in between),
relying on the seek to committed offsets that follows recovery to fetch them again. aiokafka's
`seek_to_committed` only seeks partitions whose committed offset is > 0, so on a partition
without one (a new consumer group, or a worker killed before its first commit) the dropped
records are skipped for good: the worker reports ready and never processes them. Seen here as a
restarted worker that ignored every event until it was restarted again (about 1 start in 20;
docs/streams.md, findings). Rewinding such partitions to their beginning is what
`auto_offset_reset="earliest"` would have done had the records not been dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.types.transports import ConsumerT


class RewindingConsumer(driver.Consumer):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        changelogs = self.app.tables.changelog_topics  # recovery positions these itself
        uncommitted = [
            tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs
        ]
        if uncommitted:
            # The keys are aiokafka's TopicPartitions, as its seek_to_beginning requires.
            await self._thread.seek_to_beginning(*uncommitted)
        return committed


class RewindingTransport(driver.Transport):
    Consumer: ClassVar[type[ConsumerT]] = RewindingConsumer
