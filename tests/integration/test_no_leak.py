"""A server restart must not leave dropped connections alive in the producer (with aioimaplib
they were held by its IDLE renewal timer for up to 30 minutes: docs/benchmarks.md, finding 1)."""

from __future__ import annotations

import asyncio
import gc
from asyncio import sslproto

import pytest

from infra import dovecot
from producers import _imap
from producers.config import MailboxConfig, ProducerSettings
from producers.manager import Manager
from schemas.events import ConnectionState as S

pytestmark = pytest.mark.integration


async def test_dropped_connections_are_released(stack, names, imap_user, monkeypatch):
    for k, v in {**stack, **names}.items():
        monkeypatch.setenv(k, v)
    manager = Manager(ProducerSettings())
    await manager.start()
    try:
        for i in range(10):
            user = imap_user()
            manager.watch(
                MailboxConfig(
                    tenant_id="leak",
                    email_type=f"t{i}",
                    host="localhost",
                    port=int(stack["IMAPS_PORT"]),
                    ca_file=stack["IMAP_CA_FILE"],
                    username=user,
                    password="s3cret-pw",
                    reconnect_delay_seconds=0.2,
                )
            )

        async def all_idle() -> None:
            while any(s.state is not S.IDLE for s in manager.sessions.values()):
                await asyncio.sleep(0.1)

        await asyncio.wait_for(all_idle(), 30)
        before = {k: s.machine.sequence for k, s in manager.sessions.items()}
        await asyncio.to_thread(dovecot.restart)

        async def all_reconnected() -> None:  # every session went through error -> idle again
            while any(
                s.state is not S.IDLE or s.machine.sequence <= before[k]
                for k, s in manager.sessions.items()
            ):
                await asyncio.sleep(0.1)

        await asyncio.wait_for(all_reconnected(), 60)
        gc.collect()
        live = [o for o in gc.get_objects() if isinstance(o, _imap.ImapConnection)]
        tls = [o for o in gc.get_objects() if isinstance(o, sslproto.SSLProtocol)]
        assert len(live) == len(tls) == len(manager.sessions) == 10
    finally:
        await manager.shutdown()
