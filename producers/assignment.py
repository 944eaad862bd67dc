"""Sharing mailboxes among producer processes with Kafka's own group membership.

Every producer process joins one consumer group on the compacted commands topic (keyed by
mailbox). A process runs exactly the mailboxes whose command partitions it owns:
- on assignment it replays those partitions from the beginning (compaction keeps the latest
  command per mailbox, i.e. the desired state) and starts what should run;
- on revocation it stops those mailboxes (DONE, LOGOUT) *before* the rebalance completes, so
  the next owner starts them only after the old one let go;
- a process that dies stops heartbeating; after the session timeout the group gives its
  partitions to the survivors, which resume every mailbox from its durable checkpoint.
Offsets are never committed: the desired state is always rebuilt from the topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from producers.config import MailboxConfig
from producers.manager import Manager
from schemas.codec import DecodeError, decode
from schemas.events import MailboxAction, MailboxCommand

log = logging.getLogger(__name__)
LoadConfig = Callable[[str], Awaitable[tuple[MailboxConfig, bool, int] | None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, follower: CommandFollower) -> None:
        self.f = follower

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.f.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.f.assigned = {tp.partition for tp in assigned}
        if assigned:
            self.f.consumer.seek_to_beginning(*assigned)
        self.f.joined.set()


class CommandFollower:
    def __init__(
        self,
        manager: Manager,
        load_config: LoadConfig,
        *,
        bootstrap: str,
        topic: str,
        group_id: str,
        session_timeout_ms: int = 10000,
    ) -> None:
        self.manager = manager
        self._load = load_config
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(session_timeout_ms // 5, 500),
            client_id=f"idlewire-{manager.settings.instance_id}",
        )
        self.assigned: set[int] = set()
        self.partition_of: dict[str, int] = {}
        self.running_version: dict[str, int] = {}
        self.joined = asyncio.Event()

    async def release(self, partitions: set[int]) -> None:
        gone = [m for m, p in self.partition_of.items() if p in partitions]
        await asyncio.gather(*(self._stop(m) for m in gone))
        for m in gone:
            self.partition_of.pop(m, None)
        self.assigned -= partitions
        if gone:
            log.info("released %d mailbox(es) of partitions %s", len(gone), sorted(partitions))

    async def _stop(self, mailbox_id: str) -> None:
        self.running_version.pop(mailbox_id, None)
        await self.manager.unwatch(mailbox_id)

    async def _reconcile(self, mailbox_id: str, cmd: MailboxCommand) -> None:
        if cmd.action is not MailboxAction.START:
            await self._stop(mailbox_id)
            return
        loaded = await self._load(mailbox_id)
        if loaded is None or not loaded[1]:
            await self._stop(mailbox_id)  # deleted or disabled since the command was written
            return
        cfg, _, version = loaded
        if self.running_version.get(mailbox_id) == version:
            return
        if mailbox_id in self.running_version:
            await self.manager.unwatch(mailbox_id)  # configuration changed: restart
        self.manager.watch(cfg)
        self.running_version[mailbox_id] = version

    async def run(self) -> None:
        self.consumer.subscribe([self.topic], listener=_Listener(self))
        await self.consumer.start()
        try:
            while True:
                batch = await self.consumer.getmany(timeout_ms=1000, max_records=5000)
                latest: dict[str, MailboxCommand] = {}
                for tp, records in batch.items():
                    for r in records:
                        try:
                            cmd = decode(r.value)
                        except DecodeError as exc:
                            log.error(
                                "skipping undecodable command at %s@%d: %s", tp, r.offset, exc
                            )
                            continue
                        if not isinstance(cmd, MailboxCommand):
                            continue
                        self.partition_of[cmd.mailbox_id] = tp.partition
                        prev = latest.get(cmd.mailbox_id)
                        if prev is None or cmd.config_version >= prev.config_version:
                            latest[cmd.mailbox_id] = cmd
                for mailbox_id, cmd in latest.items():
                    if self.partition_of.get(mailbox_id) in self.assigned:
                        await self._reconcile(mailbox_id, cmd)
        finally:
            await self.release(set(self.assigned))
            await self.consumer.stop()
