"""Many mailboxes in one process: start and stop them at runtime, report states, shut down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time

from producers._imap import ImapConnection
from producers._kafka import KafkaPublisher, ensure_topics
from producers._oauth_http import TokenEndpoint
from producers.checkpoint import CheckpointStore, MemoryCheckpointStore
from producers.config import MailboxConfig, ProducerSettings
from producers.credentials import Credentials, MemorySecretStore, SecretStore
from producers.oauth import OAuthTokens
from producers.pacing import ConnectGate
from producers.session import MailboxSession
from schemas.events import ConnectionState

log = logging.getLogger(__name__)


async def open_imap(cfg: MailboxConfig) -> ImapConnection:
    assert cfg.port is not None  # filled in by MailboxConfig's validator
    conn = await ImapConnection.open(
        cfg.host,
        cfg.port,
        security=cfg.security.value,
        ssl_context=cfg.ssl_context(),
        command_timeout=cfg.command_timeout_seconds,
    )
    conn.enable_keepalive()
    return conn


class Manager:
    def __init__(
        self,
        settings: ProducerSettings,
        checkpoints: CheckpointStore | None = None,
        secrets: SecretStore | None = None,
    ) -> None:
        self.settings = settings
        self.token_endpoint = TokenEndpoint()
        self.credentials = Credentials(secrets or MemorySecretStore(), self._refresh)
        self.checkpoints = checkpoints or MemoryCheckpointStore()
        self.publisher = KafkaPublisher(
            settings.kafka_bootstrap_servers,
            new_mail_topic=settings.new_mail_topic,
            state_topic=settings.state_topic,
            client_id=f"idlewire-{settings.instance_id}",
        )
        self.gate = ConnectGate(
            concurrency=settings.connect_concurrency,
            rate=settings.connect_rate,
            burst=settings.connect_rate / 2,
        )
        self.sessions: dict[str, MailboxSession] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        await ensure_topics(
            self.settings.kafka_bootstrap_servers,
            [self.settings.new_mail_topic, self.settings.state_topic],
            self.settings.topic_partitions,
        )
        await self.publisher.start()

    def watch(self, cfg: MailboxConfig) -> MailboxSession:
        """Start watching a mailbox (idempotent per mailbox_id)."""
        if cfg.mailbox_id in self._tasks and not self._tasks[cfg.mailbox_id].done():
            return self.sessions[cfg.mailbox_id]
        session = MailboxSession(
            cfg,
            opener=open_imap,
            publisher=self.publisher,
            checkpoints=self.checkpoints,
            producer_id=self.settings.instance_id,
            gate=self.gate.slot,
            credentials=self.credentials,
        )
        self.sessions[cfg.mailbox_id] = session
        self._tasks[cfg.mailbox_id] = asyncio.create_task(
            session.run(), name=f"mailbox:{cfg.mailbox_id}"
        )
        return session

    async def unwatch(self, mailbox_id: str) -> None:
        task = self._tasks.pop(mailbox_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.sessions.pop(mailbox_id, None)

    async def _refresh(self, cfg: MailboxConfig, tokens: OAuthTokens) -> OAuthTokens:
        assert cfg.oauth_token_url is not None and cfg.oauth_client_id is not None
        return await self.token_endpoint.refresh(
            cfg.oauth_token_url,
            client_id=cfg.oauth_client_id,
            client_secret=cfg.oauth_client_secret(),
            tokens=tokens,
            scopes=cfg.oauth_scopes,
        )

    async def settle_gc(self, quiet_seconds: float = 30.0, check_every: float = 10.0) -> None:
        """Move long-lived session objects out of the cyclic GC's reach once connecting settles.

        At 10,000 mailboxes a full collection walks ~1.4 million objects and stops the loop for
        ~1.2 s, the producer's worst latency outliers (docs/benchmarks.md, finding 2). After
        start-up and after each reconnect wave (no connection attempt for `quiet_seconds`) we
        collect once and freeze what survives; unfreezing first lets garbage from the previous
        wave be reclaimed.
        """
        frozen_after = -1.0
        while True:
            await asyncio.sleep(check_every)
            last = self.gate.last_attempt
            if last != frozen_after and time.monotonic() - last >= quiet_seconds:
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                frozen_after = last
                log.info(
                    "gc: froze %d objects after the connection wave settled", gc.get_freeze_count()
                )

    def states(self) -> dict[str, ConnectionState]:
        return {k: s.state for k, s in self.sessions.items()}

    async def shutdown(self) -> None:
        """Stop every session (DONE, LOGOUT), then flush Kafka, within the configured bound."""
        timeout = self.settings.shutdown_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(
                    *(self.unwatch(k) for k in list(self._tasks)), return_exceptions=True
                )
        except TimeoutError:
            log.warning("sessions did not stop within %.0fs", timeout)
        await self.token_endpoint.close()
        try:
            async with asyncio.timeout(timeout):
                await self.publisher.stop()
        except TimeoutError:
            log.warning("Kafka flush did not finish within %.0fs", timeout)
