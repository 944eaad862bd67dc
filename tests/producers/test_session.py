"""The mailbox loop driven by a scripted fake server and an injected clock (no sockets)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from producers.checkpoint import Checkpoint, FolderStatus, MemoryCheckpointStore
from producers.config import MailboxConfig
from producers.errors import AuthenticationFailed, ConnectFailed, ConnectionLost
from producers.imap_responses import FetchedMessage
from producers.session import MailboxSession
from schemas.events import ConnectionState as S
from schemas.events import MailboxResynced


class FakeServer:
    """A folder of UIDs plus a script of failures for the next connections."""

    def __init__(self) -> None:
        self.uids: list[int] = []
        self.uidvalidity = 100
        self.fail_connects = 0
        self.auth_ok = True
        self.new_mail = asyncio.Event()
        self.drop_next_idle = False
        self.has_idle = True
        self.noops = 0

    def deliver(self, n: int = 1) -> None:
        start = max(self.uids, default=0)
        self.uids += list(range(start + 1, start + 1 + n))
        self.new_mail.set()


class FakeConn:
    def __init__(self, server: FakeServer) -> None:
        self.s = server

    async def login(self, username: str, password: str) -> None:
        if not self.s.auth_ok:
            raise AuthenticationFailed("login rejected for u: [AUTHENTICATIONFAILED]")

    async def select(self, folder: str) -> FolderStatus:
        return FolderStatus(self.s.uidvalidity, max(self.s.uids, default=0) + 1, len(self.s.uids))

    async def fetch_after(self, last_uid: int) -> list[FetchedMessage]:
        return [
            FetchedMessage(u, 10, None, b"Subject: x\r\n\r\n") for u in self.s.uids if u > last_uid
        ]

    def exists_pending(self) -> bool:
        return False

    async def idle(
        self, *, renew_after: float, heartbeat: float, then_fetch_after: int | None = None
    ) -> str:
        if self.s.drop_next_idle:
            self.s.drop_next_idle = False
            raise ConnectionLost("IDLE: connection closed by server")
        await self.s.new_mail.wait()
        self.s.new_mail.clear()
        return "exists"

    def has_capability(self, name: str) -> bool:
        return name == "IDLE" and self.s.has_idle

    async def noop(self) -> None:
        self.s.noops += 1

    async def logout(self) -> None:
        pass


class FakePublisher:
    def __init__(self) -> None:
        self.mail: list[int] = []
        self.resyncs: list[tuple[int, int, int]] = []
        self.states: list[tuple[S, str | None]] = []
        self.published = asyncio.Event()

    async def publish_all(self, events):  # type: ignore[no-untyped-def]
        for e in events:
            if isinstance(e, MailboxResynced):
                self.resyncs.append((e.old_uidvalidity, e.new_uidvalidity, e.resume_after_uid))
            else:
                self.mail.append(e.uid)
        self.published.set()

    async def publish_state(self, event):  # type: ignore[no-untyped-def]
        self.states.append((event.state, event.error_class))


CFG = MailboxConfig(tenant_id="t", email_type="r", host="h", username="u", password="pw")


def make(server: FakeServer, sleeps: list[float], store=None):  # type: ignore[no-untyped-def]
    async def opener(cfg: MailboxConfig) -> FakeConn:
        if server.fail_connects:
            server.fail_connects -= 1
            raise ConnectFailed("cannot connect to h:993: Connection refused")
        return FakeConn(server)

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    pub, store = FakePublisher(), store or MemoryCheckpointStore()
    clock = iter(range(0, 10**6, 1))
    session = MailboxSession(
        CFG,
        opener=opener,
        publisher=pub,
        checkpoints=store,
        producer_id="p",
        monotonic=lambda: float(next(clock)),
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        sleep=fake_sleep,
    )
    return session, pub, store


async def until(cond, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0)


async def test_new_mail_published_once_and_checkpoint_follows():
    server, sleeps = FakeServer(), []
    server.deliver(3)  # already there before the first watch: not "new"
    session, pub, store = make(server, sleeps)
    task = asyncio.create_task(session.run())
    await until(lambda: session.state is S.IDLE)
    server.deliver(2)
    await until(lambda: pub.mail == [4, 5])
    assert await store.load("t:r", "INBOX") == Checkpoint(100, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [s for s, _ in pub.states] == [
        S.CONNECTING,
        S.CONNECTED,
        S.AUTHENTICATING,
        S.AUTHENTICATED,
        S.IDLE,
        S.DISCONNECTED,
    ]


async def test_mail_during_outage_is_published_after_reconnect():
    server, sleeps = FakeServer(), []
    session, pub, _ = make(server, sleeps)
    task = asyncio.create_task(session.run())
    await until(lambda: session.state is S.IDLE)
    server.drop_next_idle, server.fail_connects = True, 2
    server.deliver(1)  # wakes the IDLE, which then finds the connection dropped
    server.uids += [2, 3]  # delivered while we are down
    await until(lambda: session.state is S.IDLE and sorted(set(pub.mail)) == [1, 2, 3])
    assert len(sleeps) >= 2 and sleeps[1] > sleeps[0] * 0.9  # backed off
    errors = [c for s, c in pub.states if s is S.ERROR]
    assert errors[:1] == ["ConnectionLost"] and errors.count("ConnectFailed") == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_wrong_password_stops_with_error_and_no_retry():
    server, sleeps = FakeServer(), []
    server.auth_ok = False
    session, pub, _ = make(server, sleeps)
    await asyncio.wait_for(session.run(), 2)
    assert session.stopped_for_good and session.state is S.ERROR
    assert pub.states[-1] == (S.ERROR, "AuthenticationFailed")
    assert sleeps == []  # no hammering


async def test_server_without_idle_is_polled():
    server, sleeps = FakeServer(), []
    server.has_idle = False
    session, pub, _ = make(server, sleeps)
    task = asyncio.create_task(session.run())
    await until(lambda: session.state is S.IDLE)
    server.deliver(2)
    await until(lambda: pub.mail == [1, 2])
    assert server.noops >= 1 and sleeps[0] == CFG.check_interval_seconds
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_uidvalidity_change_publishes_a_resync_and_restarts_the_checkpoint():
    server, sleeps = FakeServer(), []
    server.deliver(5)
    store = MemoryCheckpointStore()
    await store.save("t:r", "INBOX", Checkpoint(99, 3))  # an older UIDVALIDITY
    session, pub, store = make(server, sleeps, store)
    task = asyncio.create_task(session.run())
    await until(lambda: session.state is S.IDLE)
    assert pub.resyncs == [(99, 100, 5)] and pub.mail == []
    assert await store.load("t:r", "INBOX") == Checkpoint(100, 5)
    server.deliver(1)
    await until(lambda: pub.mail == [6])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_resume_after_restart_publishes_what_arrived_while_down():
    server, sleeps = FakeServer(), []
    store = MemoryCheckpointStore()
    server.deliver(2)
    await store.save("t:r", "INBOX", Checkpoint(100, 1))  # the last run published UID 1
    session, pub, _ = make(server, sleeps, store)
    task = asyncio.create_task(session.run())
    await until(lambda: session.state is S.IDLE)
    assert pub.mail == [2]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
