"""Fixtures for the status app's integration tests: real worker processes, real Kafka, real
PostgreSQL. Each cluster gets its own topics and Faust app id, each worker its own port and data
dir; topics and tenants are deleted afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from schemas.codec import encode
from schemas.events import Event, NewMailDetected

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 30.0,
                     interval: float = 0.2) -> T:
    """The first result of `check` that does not raise AssertionError, else its last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


@dataclasses.dataclass
class Worker:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclasses.dataclass
class StatusCluster:
    """Worker processes sharing one app id and one pair of source topics."""

    env: dict[str, str]
    tmp: Path
    http: aiohttp.ClientSession
    workers: dict[str, Worker] = dataclasses.field(default_factory=dict)
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def app_id(self) -> str:
        return self.env["IDLEWIRE_STREAMS_APP_ID"]

    def start(self, name: str, port: int | None = None) -> Worker:
        port = port or free_port()
        data_dir = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}"  # fresh: state comes from Kafka
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "--web-port", str(port),
                 "--data-dir", str(data_dir)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )
        self.workers[name] = Worker(name, port, proc, log)
        return self.workers[name]

    def kill(self, name: str) -> None:
        w = self.workers[name]
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(10)

    async def ready(self, name: str, timeout: float = 60.0) -> None:
        w = self.workers[name]

        async def check() -> None:
            assert w.alive(), f"worker {name} exited:\n{w.log.read_text()[-3000:]}"
            try:
                status, _ = await self.get(name, "/api/email/idle/ready", None)
            except aiohttp.ClientError as exc:
                raise AssertionError(str(exc)) from exc
            assert status == 200

        await eventually(check, timeout)

    async def get(self, name: str, path: str, token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.workers[name].url + path, headers=headers) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, body

    async def publish(self, events: Iterable[Event | tuple[str, bytes]]) -> None:
        """Encoded exactly as the producers do: key = mailbox_id, value = single-object Avro.
        A (topic, raw bytes) pair is sent as is (for undecodable records)."""
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.env["KAFKA_BOOTSTRAP_SERVERS"], enable_idempotence=True,
            acks="all",
        )
        await producer.start()
        try:
            futures = []
            for e in events:
                if isinstance(e, tuple):
                    topic, value, key = e[0], e[1], b"garbage"
                else:
                    mail = isinstance(e, NewMailDetected)
                    topic = self.env["IDLEWIRE_NEW_MAIL_TOPIC" if mail else "IDLEWIRE_STATE_TOPIC"]
                    value, key = encode(e), e.key
                futures.append(await producer.send(topic, value, key=key))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def stop_all(self) -> None:
        for w in self.workers.values():
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers.values():
            try:
                await asyncio.to_thread(w.proc.wait, 30)
            except subprocess.TimeoutExpired:
                w.proc.kill()


async def _delete_topics(bootstrap: str, prefixes: tuple[str, ...]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def unique_tenants(*names: str) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"{run}-{n}" for n in names]


async def make_cluster(
    stack: dict[str, str], tmp: Path, tenants: Iterable[str], partitions: int = 4
) -> AsyncIterator[StatusCluster]:
    """A cluster with no workers started yet; the tenants (unique ids) with one credential
    each, an admin bound to the first tenant ("admin") and an admin bound to none ("root")."""
    from control import auth, db

    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        **stack,
        "IDLEWIRE_STATE_TOPIC": f"test.{run}.connection-state",
        "IDLEWIRE_NEW_MAIL_TOPIC": f"test.{run}.new-mail",
        "IDLEWIRE_STREAMS_APP_ID": f"test-{run}-status",
        "IDLEWIRE_STREAMS_PARTITIONS": str(partitions),
        "IDLEWIRE_TOPIC_PARTITIONS": "3",
        # A SIGKILLed worker's partitions move after this (the broker's minimum is 6 s).
        "IDLEWIRE_STREAMS_SESSION_TIMEOUT": "6",
        "IDLEWIRE_STREAMS_HEARTBEAT_INTERVAL": "1",
    }
    pool = await db.connect(stack["DATABASE_URL"])
    names = list(tenants)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    cluster = StatusCluster(env, tmp, http)
    try:
        for t in names:
            await pool.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)", t)
            cluster.tokens[t] = await auth.create_credential(pool, tenant_id=t)
        cluster.tokens["admin"] = await auth.create_credential(
            pool, tenant_id=names[0], is_admin=True
        )
        cluster.tokens["root"] = await auth.create_credential(pool, tenant_id=None, is_admin=True)
        yield cluster
    finally:
        await cluster.stop_all()
        await http.close()
        await pool.execute("DELETE FROM tenants WHERE tenant_id = ANY($1::text[])", names)
        await pool.execute(
            "DELETE FROM api_credentials WHERE tenant_id IS NULL AND credential_id = $1",
            cluster.tokens.get("root", "iw__").split("_")[1],
        )
        await pool.close()
        await _delete_topics(stack["KAFKA_BOOTSTRAP_SERVERS"], (f"test.{run}.", f"test-{run}-"))


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("streams")
