"""Helpers shared by the integration tests: mailbox configs, state waits, a controllable relay."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from schemas.events import ConnectionState, ConnectionStateChanged


def mailbox(
    stack: dict[str, str], user: str, password: str = "s3cret-pw", **extra: Any
) -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "email_type": "reservations",
        "mailbox_id": f"acme:{user}",
        "host": "localhost",
        "port": int(stack["IMAPS_PORT"]),
        "security": "tls",
        "ca_file": stack["IMAP_CA_FILE"],
        "username": user,
        "password": password,
        **extra,
    }


def states(events: list[Any]) -> list[ConnectionStateChanged]:
    return [e for _, e in events if isinstance(e, ConnectionStateChanged)]


async def wait_for_state(
    consumer: Any,
    names: dict[str, str],
    state: ConnectionState,
    count: int = 1,
    timeout: float = 30.0,
) -> list[ConnectionStateChanged]:
    """All state events so far, once `state` has been reached `count` times."""

    def reached(evs: list[Any]) -> bool:
        return sum(e.state is state for e in states(evs)) >= count

    got = await consumer(names["IDLEWIRE_STATE_TOPIC"], 10**6, timeout, until=reached)
    seen = states(got)
    assert sum(e.state is state for e in seen) >= count, [(e.state, e.reason) for e in seen]
    return seen


class Relay:
    """A TCP relay the test controls: `freeze()` silently drops traffic of open connections
    (a half-open connection: no FIN, no RST), new connections still pass."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen: set[asyncio.StreamWriter] = set()
        self.live: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.live.add(cw)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    if cw in self.frozen:
                        continue  # swallow: the peer never hears of it
                    w.write(data)
                    await w.drain()

        await asyncio.gather(pump(cr, sw), pump(sr, cw))
        for w in (cw, sw):
            w.close()

    def freeze(self) -> None:
        self.frozen |= self.live
        self.live = set()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self.frozen | self.live:
            w.close()
