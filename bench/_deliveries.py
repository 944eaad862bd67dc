"""Mail at random moments to random mailboxes, and the latency floor's raw IDLE clients.

A delivery is an IMAP APPEND (LITERAL+) on a plain connection that was opened and logged in as
the target user *before* its moment; "delivery done" is the arrival of the APPEND's tagged OK
(time.monotonic() in this process). IMAP offers no way to APPEND into another user's INBOX without
extra server configuration (a shared namespace with ACLs, or master users plus one login per
target), so every delivery has its own short-lived connection; connect and LOGIN are not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import random
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench._rawimap import RawImap

HOST = "127.0.0.1"


@dataclasses.dataclass
class Delivery:
    index: int
    kind: str  # "producer", "floor" or "floor-fetch"
    user: str
    at: float  # seconds after the start of the delivery phase
    t_ok: float | None = None  # monotonic: tagged OK of the APPEND
    wall_ok: float | None = None
    uid: int | None = None
    t_seen: float | None = None  # monotonic: record readable on Kafka / EXISTS on the floor client
    detected_at: float | None = None  # wall clock: the producer's detected_at
    t_fetched: float | None = None  # monotonic: floor-fetch clients, FETCH response complete
    error: str | None = None

    @property
    def latency_ms(self) -> float | None:
        if self.t_ok is None or self.t_seen is None:
            return None
        return (self.t_seen - self.t_ok) * 1000


def schedule(
    groups: list[tuple[str, list[str], int]], rate: float, min_gap: float, rng: random.Random
) -> list[Delivery]:
    """Poisson arrivals at `rate` per second; `groups` are (kind, users, count), interleaved at
    random so that every kind sees the same conditions.

    A user gets no second mail within `min_gap` seconds, so every delivery finds its IDLE session
    hibernated again (Dovecot hibernates 1 s after IDLE starts; a non-hibernated IDLE reports new
    mail only after a fixed 500 ms).
    """
    kinds = [kind for kind, _, count in groups for _ in range(count)]
    pools = {kind: users for kind, users, _ in groups}
    rng.shuffle(kinds)
    last: dict[str, float] = {}
    out: list[Delivery] = []
    t = 1.0
    for i, kind in enumerate(kinds):
        t += rng.expovariate(rate)
        pool = pools[kind]
        for _ in range(1000):
            user = rng.choice(pool)
            if t - last.get(user, -1e9) >= min_gap:
                break
        else:  # too few users for this rate: wait for the least recently used one
            user = min(pool, key=lambda u: last.get(u, -1e9))
            t = max(t, last[user] + min_gap)
        last[user] = t
        out.append(Delivery(i, kind, user, t))
    return out


def message(run: str, d: Delivery) -> bytes:
    return (
        f"Message-ID: <bench-{run}-{d.index}@idlewire.bench>\r\n"
        f"From: Booking Platform <noreply@booking.example>\r\n"
        f"To: {d.user}\r\n"
        f"Subject: Reservation {d.index}: 2 nights, arrival 2026-12-24\r\n"
        f"Date: {email.utils.format_datetime(datetime.now(UTC))}\r\n"
        "\r\n"
        "Guest: Ada Lovelace\r\nRoom: double\r\n"
    ).encode()


async def deliver(
    d: Delivery,
    *,
    start: float,
    port: int,
    password: str,
    run: str,
    lead: float = 1.0,
    before_append: Callable[[Delivery], None] = lambda d: None,
) -> None:
    """Open and log in `lead` seconds early, APPEND at `start + d.at`, record the tagged OK."""
    await asyncio.sleep(max(0.0, start + d.at - lead - time.monotonic()))
    try:
        conn = await RawImap.connect(HOST, port)
        await conn.login(d.user, password)
    except Exception as exc:
        d.error = f"open: {type(exc).__name__}: {exc}"
        return
    try:
        await asyncio.sleep(max(0.0, start + d.at - time.monotonic()))
        before_append(d)
        _, d.uid, d.t_ok = await conn.append(message(run, d))
        d.wall_ok = time.time() - (time.monotonic() - d.t_ok)
    except Exception as exc:
        d.error = f"append: {type(exc).__name__}: {exc}"
    finally:
        asyncio.get_running_loop().create_task(conn.logout())


class Floor:
    """K raw IDLE clients (hand-written LOGIN/SELECT/IDLE, no aioimaplib, no Kafka).

    With `fetch`, each client also does what the producer must do on the wire after EXISTS
    (DONE + FETCH of the header fields, pipelined), so the cost of that round trip is known.
    """

    def __init__(
        self,
        users: list[str],
        password: str,
        port: int,
        ctx: ssl.SSLContext | None,
        fetch: bool = False,
    ):
        self.users, self.password, self.port, self.ctx = users, password, port, ctx
        self.fetch = fetch
        self.conns: dict[str, RawImap] = {}
        self.waiting: dict[str, Delivery] = {}
        self.unexpected = 0
        self.dropped: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 60.0) -> None:
        ready = [asyncio.get_running_loop().create_future() for _ in self.users]
        self._tasks = [
            asyncio.create_task(self._client(u, f)) for u, f in zip(self.users, ready, strict=True)
        ]
        async with asyncio.timeout(timeout):
            await asyncio.gather(*ready)

    async def _client(self, user: str, ready: asyncio.Future[None]) -> None:
        try:
            conn = await RawImap.connect(HOST, self.port, self.ctx)
            await conn.login(user, self.password)
            await conn.select("INBOX")
        except Exception as exc:
            ready.set_exception(exc)
            return
        self.conns[user] = conn
        ready.set_result(None)

        current: list[Delivery | None] = [None]

        def on_exists(_n: int, t: float) -> None:
            d = current[0] = self.waiting.pop(user, None)
            if d is None:
                self.unexpected += 1
            else:
                d.t_seen = t

        def on_fetched(t: float) -> None:
            if current[0] is not None:
                current[0].t_fetched = t

        with contextlib.suppress(Exception):  # the connection ends either way
            if self.fetch:
                await conn.idle_fetch_forever(on_exists, on_fetched)
            else:
                await conn.idle_forever(on_exists)
        self.dropped.append(user)

    def expect(self, d: Delivery) -> None:
        """Called just before the APPEND: the next EXISTS on this user's connection is d's."""
        self.waiting[d.user] = d

    async def stop(self) -> None:
        for conn in self.conns.values():
            conn.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
