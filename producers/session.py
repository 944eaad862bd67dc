"""The async loop that watches one mailbox folder: connect, log in, catch up, IDLE, repeat.

Policy lives in the pure modules (states, backoff, checkpoint, errors); this loop only drives
them, and it is the one place that sleeps between attempts.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from opentelemetry import trace

from producers.backoff import AttemptCounter
from producers.checkpoint import Checkpoint, CheckpointStore, advance, resume
from producers.config import MailboxConfig
from producers.errors import Action, IdlewireError
from producers.imap_responses import FetchedMessage
from producers.mail import new_mail_event
from producers.states import StateMachine
from schemas.events import (
    ConnectionState,
    ConnectionStateChanged,
    NewMailDetected,
    state_event_id,
)

S = ConnectionState
log = logging.getLogger(__name__)
tracer = trace.get_tracer("idlewire.producer")


class Connection(Protocol):
    """What the session needs of an IMAP connection (producers._imap.ImapConnection)."""

    async def login(self, username: str, password: str) -> None: ...
    async def select(self, folder: str) -> object: ...
    async def fetch_after(self, last_uid: int) -> list[FetchedMessage]: ...
    def exists_pending(self) -> bool: ...
    async def idle(self, *, renew_after: float, heartbeat: float) -> str: ...
    async def logout(self) -> None: ...


class Publisher(Protocol):
    async def publish_all(self, events: list[NewMailDetected]) -> None: ...
    async def publish_state(self, event: ConnectionStateChanged) -> None: ...


Opener = Callable[[MailboxConfig], Awaitable[Connection]]


class MailboxSession:
    def __init__(
        self,
        config: MailboxConfig,
        *,
        opener: Opener,
        publisher: Publisher,
        checkpoints: CheckpointStore,
        producer_id: str,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._opener = opener
        self._publisher = publisher
        self._checkpoints = checkpoints
        self._producer_id = producer_id
        self._monotonic = monotonic
        self._now = now
        self._sleep = sleep
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
                        self._log.error("stopped: %s (%s)", exc, exc.error_class)
                        return
                    delay = self.config.backoff.delay(attempt)
                    self._log.warning(
                        "attempt %d failed: %s; retrying in %.1fs", attempt, exc, delay
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
        await self._move(S.CONNECTING)
        with tracer.start_as_current_span("imap.connect", attributes=self._attrs):
            self._conn = conn = await self._opener(cfg)
        await self._move(S.CONNECTED)
        await self._move(S.AUTHENTICATING)
        with tracer.start_as_current_span("imap.login", attributes=self._attrs):
            await conn.login(cfg.username, cfg.password.get_secret_value())
        await self._move(S.AUTHENTICATED)
        status = await conn.select(cfg.folder)
        stored = await self._checkpoints.load(cfg.mailbox_id, cfg.folder)
        start = resume(stored, status)  # type: ignore[arg-type]
        if start.reset:
            self._log.warning(
                "UIDVALIDITY changed %s -> %s: restarting at UID %d",
                stored.uidvalidity if stored else None,
                start.checkpoint.uidvalidity,
                start.checkpoint.last_uid,
            )
        if start.checkpoint != stored:
            await self._checkpoints.save(cfg.mailbox_id, cfg.folder, start.checkpoint)
        checkpoint = await self._catch_up(conn, start.checkpoint)
        await self._move(S.IDLE)
        self.counter.connected(self._monotonic())
        while True:
            await conn.idle(renew_after=cfg.idle_timeout_seconds, heartbeat=cfg.heartbeat_seconds)
            checkpoint = await self._catch_up(conn, checkpoint)

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
            checkpoint = advance(checkpoint, messages[-1].uid)
            await self._checkpoints.save(cfg.mailbox_id, cfg.folder, checkpoint)
            for e in events:
                self._log.info("published uid %d event %s", e.uid, e.event_id)
