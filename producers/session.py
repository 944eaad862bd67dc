"""The async loop that watches one mailbox folder: connect, log in, catch up, IDLE, repeat.

Policy lives in the pure modules (states, backoff, checkpoint, errors); this loop only drives
them, and it is the one place that sleeps between attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Protocol

from opentelemetry import trace

from producers.backoff import AttemptCounter
from producers.checkpoint import Checkpoint, CheckpointStore, advance, resume
from producers.config import MailboxConfig
from producers.credentials import Credentials, MemorySecretStore
from producers.errors import Action, ConfigurationError, IdlewireError
from producers.imap_responses import FetchedMessage
from producers.login import authenticate
from producers.mail import new_mail_event
from producers.oauth import OAuthTokens
from producers.states import StateMachine
from producers.telemetry import DETECTION_DELAY, MAIL_PUBLISHED, TRANSITIONS
from schemas.events import (
    ConnectionState,
    ConnectionStateChanged,
    MailboxResynced,
    NewMailDetected,
    resync_event_id,
    state_event_id,
)

S = ConnectionState
log = logging.getLogger(__name__)
tracer = trace.get_tracer("idlewire.producer")


class Connection(Protocol):
    """What the session needs of an IMAP connection (producers._imap.ImapConnection)."""

    async def login(self, username: str, password: str) -> None: ...
    async def authenticate(
        self, mechanism: str, initial_response: bytes, *, final: bytes, username: str
    ) -> None: ...
    async def select(self, folder: str) -> object: ...
    async def fetch_after(self, last_uid: int) -> list[FetchedMessage]: ...
    def exists_pending(self) -> bool: ...
    async def idle(
        self, *, renew_after: float, heartbeat: float, then_fetch_after: int | None = None
    ) -> str: ...
    async def noop(self) -> None: ...
    def has_capability(self, name: str) -> bool: ...
    async def logout(self) -> None: ...


class Publisher(Protocol):
    async def publish_all(self, events: Sequence[NewMailDetected | MailboxResynced]) -> None: ...
    async def publish_state(self, event: ConnectionStateChanged) -> None: ...


async def _no_refresh(cfg: MailboxConfig, tokens: OAuthTokens) -> OAuthTokens:
    raise ConfigurationError("no token endpoint client configured")


Opener = Callable[[MailboxConfig], Awaitable[Connection]]
Gate = Callable[[str, int], AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def no_gate(host: str, port: int) -> AsyncIterator[None]:
    yield


class MailboxSession:
    def __init__(
        self,
        config: MailboxConfig,
        *,
        opener: Opener,
        publisher: Publisher,
        checkpoints: CheckpointStore,
        producer_id: str,
        credentials: Credentials | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        gate: Gate = no_gate,
    ) -> None:
        self.config = config
        self._opener = opener
        self._publisher = publisher
        self._checkpoints = checkpoints
        self._producer_id = producer_id
        self._credentials = credentials or Credentials(MemorySecretStore(), _no_refresh)
        self._monotonic = monotonic
        self._now = now
        self._sleep = sleep
        self._rand = rand
        self._gate = gate
        self.machine = StateMachine()
        self.session_id = uuid.uuid4().hex
        self.counter = AttemptCounter(config.backoff)
        self.last_error: str | None = None
        self.stopped_for_good = False
        self._conn: Connection | None = None
        self._log = logging.LoggerAdapter(
            log, {"tenant_id": config.tenant_id, "mailbox_id": config.mailbox_id}
        )

    @property
    def state(self) -> ConnectionState:
        return self.machine.state

    @property
    def _attrs(self) -> dict[str, str]:
        return {
            "idlewire.tenant_id": self.config.tenant_id,
            "idlewire.mailbox_id": self.config.mailbox_id,
            "idlewire.email_type": self.config.email_type,
        }

    # ---- state events ---------------------------------------------------------------------
    async def _move(
        self, to: ConnectionState, reason: str | None = None, error: IdlewireError | None = None
    ) -> None:
        t = self.machine.move(to, reason, error.error_class if error else None)
        cfg = self.config
        event = ConnectionStateChanged(
            event_id=state_event_id(self._producer_id, cfg.mailbox_id, self.session_id, t.sequence),
            tenant_id=cfg.tenant_id,
            email_type=cfg.email_type,
            mailbox_id=cfg.mailbox_id,
            state=t.state,
            previous_state=t.previous,
            reason=reason,
            error_class=t.error_class,
            attempt=self.counter.attempt,
            producer_id=self._producer_id,
            session_id=self.session_id,
            sequence=t.sequence,
            occurred_at=self._now(),
        )
        self._log.info("state %s -> %s%s", t.previous, t.state, f" ({reason})" if reason else "")
        TRANSITIONS.add(
            1, {"tenant_id": cfg.tenant_id, "email_type": cfg.email_type, "state": t.state.value}
        )
        await self._publisher.publish_state(event)

    # ---- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Watch until cancelled or until an error that needs a person (Action.STOP)."""
        try:
            while True:
                try:
                    await self._connect_and_watch()
                except IdlewireError as exc:
                    await self._close_quietly()
                    attempt = self.counter.failed(self._monotonic())
                    self.last_error = str(exc)
                    await self._move(S.ERROR, str(exc), exc)
                    if exc.action is Action.STOP:
                        self.stopped_for_good = True
                        self._log.error("stopped: %s (%s)", self.last_error, exc.error_class)
                        return
                    delay = self.config.backoff.delay(attempt, self._rand)
                    self._log.warning(
                        "attempt %d failed: %s; retrying in %.1fs", attempt, self.last_error, delay
                    )
                    await self._sleep(delay)
        except asyncio.CancelledError:
            await self._close_quietly(logout=True)
            if self.machine.state is not S.DISCONNECTED:
                await self._move(S.DISCONNECTED, "stopped")
            raise

    async def _close_quietly(self, logout: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if logout:
                await asyncio.shield(conn.logout())
            else:
                await conn.logout()
        except Exception:  # closing a broken connection may fail in any way; it is gone anyway
            pass

    async def _connect_and_watch(self) -> None:
        cfg = self.config
        assert cfg.port is not None
        async with self._gate(cfg.host, cfg.port):
            await self._move(S.CONNECTING)
            with tracer.start_as_current_span("imap.connect", attributes=self._attrs):
                self._conn = conn = await self._opener(cfg)
            await self._move(S.CONNECTED)
            await self._move(S.AUTHENTICATING)
            with tracer.start_as_current_span("imap.login", attributes=self._attrs):
                await authenticate(conn, cfg, self._credentials)
            await self._move(S.AUTHENTICATED)
            status = await conn.select(cfg.folder)
        stored = await self._checkpoints.load(cfg.mailbox_id, cfg.folder)
        start = resume(stored, status)  # type: ignore[arg-type]
        if start.reset and stored is not None:
            await self._publish_resync(stored.uidvalidity, start.checkpoint)
        if start.checkpoint != stored:
            await self._checkpoints.save(cfg.mailbox_id, cfg.folder, start.checkpoint)
        checkpoint = await self._catch_up(conn, start.checkpoint)
        await self._move(S.IDLE)
        self.counter.connected(self._monotonic())
        if conn.has_capability("IDLE"):
            while True:
                # Renewals are jittered over the last quarter of the interval so that thousands
                # of mailboxes started together do not all send DONE in the same second.
                renew = cfg.idle_timeout_seconds * (0.75 + 0.25 * self._rand())
                outcome = await conn.idle(
                    renew_after=renew,
                    heartbeat=cfg.heartbeat_seconds,
                    then_fetch_after=checkpoint.last_uid,
                )
                with tracer.start_as_current_span("imap.idle.wake", attributes=self._attrs) as s:
                    s.set_attribute("idlewire.wake", outcome)
                    checkpoint = await self._catch_up(conn, checkpoint)
        else:
            self._log.info("server has no IDLE: polling every %.0fs", cfg.check_interval_seconds)
            while True:
                await self._sleep(cfg.check_interval_seconds)
                await conn.noop()
                checkpoint = await self._catch_up(conn, checkpoint)

    async def _publish_resync(self, old_uidvalidity: int, new: Checkpoint) -> None:
        cfg = self.config
        self._log.warning(
            "UIDVALIDITY changed %d -> %d: resuming after UID %d",
            old_uidvalidity,
            new.uidvalidity,
            new.last_uid,
        )
        event = MailboxResynced(
            event_id=resync_event_id(
                cfg.tenant_id, cfg.mailbox_id, cfg.folder, old_uidvalidity, new.uidvalidity
            ),
            tenant_id=cfg.tenant_id,
            email_type=cfg.email_type,
            mailbox_id=cfg.mailbox_id,
            folder=cfg.folder,
            old_uidvalidity=old_uidvalidity,
            new_uidvalidity=new.uidvalidity,
            resume_after_uid=new.last_uid,
            producer_id=self._producer_id,
            occurred_at=self._now(),
        )
        await self._publisher.publish_all([event])

    async def _catch_up(self, conn: Connection, checkpoint: Checkpoint) -> Checkpoint:
        """Publish every UID above the checkpoint; advance it only after Kafka acknowledged."""
        cfg = self.config
        while True:
            with tracer.start_as_current_span("imap.fetch", attributes=self._attrs):
                messages = await conn.fetch_after(checkpoint.last_uid)
            if not messages:
                if conn.exists_pending():
                    continue  # new mail arrived while we were fetching
                return checkpoint
            detected_at = self._now()
            events = [
                new_mail_event(
                    m,
                    tenant_id=cfg.tenant_id,
                    email_type=cfg.email_type,
                    mailbox_id=cfg.mailbox_id,
                    folder=cfg.folder,
                    uidvalidity=checkpoint.uidvalidity,
                    producer_id=self._producer_id,
                    detected_at=detected_at,
                )
                for m in messages
            ]
            with tracer.start_as_current_span("kafka.publish", attributes=self._attrs) as span:
                span.set_attribute("idlewire.events", len(events))
                await self._publisher.publish_all(events)
            labels = {"tenant_id": cfg.tenant_id, "email_type": cfg.email_type}
            MAIL_PUBLISHED.add(len(events), labels)
            for e in events:
                if e.internal_date is not None:
                    DETECTION_DELAY.record(
                        max((e.detected_at - e.internal_date).total_seconds() * 1000, 0), labels
                    )
            checkpoint = advance(checkpoint, messages[-1].uid)
            await self._checkpoints.save(cfg.mailbox_id, cfg.folder, checkpoint)
            for e in events:
                self._log.info("published uid %d event %s", e.uid, e.event_id)
