"""Several producer processes share the mailboxes through Kafka's group membership; changes go
PostgreSQL -> outbox -> compacted commands topic; SIGKILL of a producer moves its mailboxes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from control import mailboxes as mb
from control.outbox import OutboxRelay
from infra import dovecot
from producers.config import MailboxConfig
from schemas.codec import decode
from schemas.events import ConnectionState as S
from schemas.events import MailboxAction, MailboxCommand, NewMailDetected
from tests.conftest import ROOT, control_cli, free_port
from tests.integration.helpers import states

pytestmark = pytest.mark.integration


def start_group_producer(
    env: dict[str, str], tmp_path: Path, n: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = (tmp_path / f"group-producer-{n}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers", "--group"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **env,
            "IDLEWIRE_HEALTH_PORT": str(port),
            "IDLEWIRE_PRODUCER_ID": f"pod-{n}",
            "IDLEWIRE_GROUP_SESSION_TIMEOUT_MS": "6000",
        },
    )
    return proc, port


def local_mailboxes(port: int) -> dict[str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/mailboxes", timeout=2) as r:
            return dict(json.load(r)["mailboxes"])
    except OSError:
        return {}


async def wait_until(cond, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not await asyncio.to_thread(cond):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s: {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def test_three_producers_share_and_fail_over(
    stack, names, control_env, control_api, imap_user, consumer, tmp_path
):
    tenant_id = f"grp{uuid.uuid4().hex[:6]}"
    token = control_cli(control_env, "tenant-create", tenant_id, "Group Hotel")
    users = {}
    for i in range(6):
        user = imap_user("pw-group")
        users[f"{tenant_id}:type{i}"] = user
        control_cli(
            control_env,
            "mailbox-add",
            tenant_id,
            f"type{i}",
            "--host",
            "localhost",
            "--port",
            stack["IMAPS_PORT"],
            "--ca-file",
            stack["IMAP_CA_FILE"],
            "--username",
            user,
            stdin=b"pw-group\n",
        )
        control_cli(control_env, "start", tenant_id, f"type{i}")
    procs = []
    overlaps: list[tuple[float, str]] = []
    sampling = True

    async def sample_overlaps() -> None:
        # "two processes never IDLE the same mailbox": sample every process's sessions
        while sampling:
            seen: dict[str, int] = {}
            for _, port in list(procs):
                for m, st in (await asyncio.to_thread(local_mailboxes, port)).items():
                    if st == "idle":
                        seen[m] = seen.get(m, 0) + 1
            overlaps.extend((time.monotonic(), m) for m, k in seen.items() if k > 1)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample_overlaps())
    try:
        for n in range(3):  # join one after another: every join is a rebalance
            procs.append(start_group_producer(control_env, tmp_path, n))
            await asyncio.sleep(2)

        def all_ready() -> bool:
            def ready(port: int) -> bool:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                        return True
                except OSError:
                    return False

            return all(ready(port) for _, port in procs)

        await wait_until(all_ready, 60, "all three processes joined the group")

        def all_idle_once() -> bool:
            owned = [local_mailboxes(port) for _, port in procs]
            ours = [{m: s for m, s in o.items() if m in users} for o in owned]
            held = [m for o in ours for m in o]
            return sorted(held) == sorted(users) and all(
                s == "idle" for o in ours for s in o.values()
            )

        await wait_until(all_idle_once, 60, "every mailbox idle in exactly one process")
        owners = {m: n for n, (_, port) in enumerate(procs) for m in local_mailboxes(port)}
        assert len(set(owners.values())) >= 2, f"mailboxes not spread: {owners}"
        victim = max(range(3), key=lambda n: list(owners.values()).count(n))
        moved = [m for m, n in owners.items() if n == victim]
        assert moved, owners

        # SIGKILL the busiest process while mail is being delivered to its mailboxes
        procs[victim][0].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        for m in moved:
            await asyncio.to_thread(
                dovecot.deliver, users[m], f"Subject: {m}\r\n\r\nx\r\n".encode()
            )
        survivors = [p for n, p in enumerate(procs) if n != victim]

        def moved_idle() -> bool:
            states_now: dict[str, str] = {}
            for _, port in survivors:
                states_now.update(local_mailboxes(port))
            return all(states_now.get(m) == "idle" for m in moved)

        await wait_until(moved_idle, 60, "the killed process's mailboxes idle elsewhere")
        failover = time.monotonic() - killed_at
        got = await consumer(names["IDLEWIRE_NEW_MAIL_TOPIC"], len(moved), 30)
        assert sorted(e.subject for _, e in got if isinstance(e, NewMailDetected)) == sorted(moved)
        print(f"\nfailover of {len(moved)} mailbox(es) after SIGKILL: {failover:.1f} s")
        (tmp_path / "failover.txt").write_text(f"{failover:.2f}\n")

        # a stop through the HTTP API (-> outbox -> topic) reaches whichever process owns it
        stopped = moved[0]
        request = urllib.request.Request(
            f"{control_api}/api/email/idle/stop",
            method="POST",
            data=json.dumps({"email_type": stopped.split(":")[1]}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202

        def stopped_everywhere() -> bool:
            return all(stopped not in local_mailboxes(port) for _, port in survivors)

        await wait_until(stopped_everywhere, 30, "stop reached the owning process")
        seen = states(await consumer(names["IDLEWIRE_STATE_TOPIC"], 10**6, 3))
        last = [e for e in seen if e.mailbox_id == stopped][-1]
        assert last.state is S.DISCONNECTED
        sampling = False
        await sampler
        assert overlaps == [], f"a mailbox was IDLE in two processes at once: {overlaps[:5]}"
    finally:
        sampling = False
        sampler.cancel()
        for p, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


async def test_outbox_survives_a_crash_between_commit_and_publish(stack, names, control_env):
    """The change is committed, the process dies before Kafka hears of it; a later relay sends
    it."""
    topic = control_env["IDLEWIRE_COMMAND_TOPIC"]
    pool = await asyncpg.create_pool(stack["DATABASE_URL"], min_size=1, max_size=3)
    tenant_id = f"obx{uuid.uuid4().hex[:6]}"
    try:
        await mb.create_tenant(pool, tenant_id, "Outbox")
        await mb.put_mailbox(
            pool, MailboxConfig(tenant_id=tenant_id, email_type="res", host="h", username="u")
        )
        await mb.set_enabled(pool, tenant_id, "res", True)  # committed; nothing published yet
        # "crash": the process that committed is gone; a relay started later finds the row
        producer = AIOKafkaProducer(
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"], enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            relay = OutboxRelay(pool, producer, topic)
            while await relay.drain_once():
                pass
        finally:
            await producer.stop()
        unsent = await pool.fetchval(
            "SELECT count(*) FROM command_outbox WHERE sent_at IS NULL AND mailbox_id = $1",
            f"{tenant_id}:res",
        )
        assert unsent == 0
    finally:
        await pool.close()
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        auto_offset_reset="earliest",
        group_id=None,
    )
    await c.start()
    try:
        cmds = []
        async with asyncio.timeout(20):
            while not any(x.mailbox_id == f"{tenant_id}:res" for x in cmds):
                for records in (await c.getmany(timeout_ms=500)).values():
                    cmds += [d for r in records if isinstance(d := decode(r.value), MailboxCommand)]
        ours = [x for x in cmds if x.mailbox_id == f"{tenant_id}:res"]
        assert ours[-1].action is MailboxAction.START
    finally:
        await c.stop()
