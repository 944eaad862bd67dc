"""Two status workers as real processes sharing the partitions: any worker answers for any
tenant (forwarding to the owner), admin/all gathers from both, and when one is SIGKILLed the
other takes its partitions over; restarted, it rejoins.

Each test uses its own mailboxes of the shared tenants, so any order works; the failover test
leaves two running workers behind.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import ConnectionState as S
from schemas.events import Event
from streams._kafka import partition_for_key
from tests.streams.conftest import StatusCluster, eventually, make_cluster
from tests.streams.events import mail, session, state

pytestmark = pytest.mark.integration

PARTITIONS = 4
API = "/api/email/idle"


def tenants_on_every_partition(per_partition: int = 2) -> list[str]:
    """Unique tenant ids, `per_partition` of them in each partition, so both workers own some."""
    run, out, i = uuid.uuid4().hex[:8], [], 0
    counts = dict.fromkeys(range(PARTITIONS), 0)
    while min(counts.values()) < per_partition:
        t, i = f"{run}-t{i}", i + 1
        p = partition_for_key(t.encode(), PARTITIONS)
        if counts[p] < per_partition:
            counts[p] += 1
            out.append(t)
    return out


TENANTS = tenants_on_every_partition()


@pytest.fixture(scope="module")
async def two(stack: dict[str, str], module_tmp: Path) -> AsyncIterator[StatusCluster]:
    async for cluster in make_cluster(stack, module_tmp, TENANTS, partitions=PARTITIONS):
        cluster.start("w1")
        cluster.start("w2")
        await cluster.ready("w1")
        await cluster.ready("w2")
        await eventually(functools.partial(spread_over, cluster, "w1", {"w1", "w2"}), 60)
        yield cluster


async def spread_over(cluster: StatusCluster, asker: str, names: set[str]) -> dict[str, Any]:
    """admin/all as `asker` sees it, once exactly the workers `names` hold every partition."""
    code, body = await cluster.get(asker, f"{API}/admin/all", cluster.tokens["admin"])
    assert code == 200, (code, body)
    assert body["workers"] == sorted(cluster.workers[n].url for n in names)
    return dict(body)


async def rows(cluster: StatusCluster, worker: str, tenant: str, suffix: str) -> list[Any]:
    code, body = await cluster.get(worker, f"{API}/status", cluster.tokens[tenant])
    assert code == 200, (worker, tenant, code, body)
    assert body["tenant_id"] == tenant
    assert all(m["tenant_id"] == tenant and m["mailbox_id"].startswith(f"{tenant}:")
               for m in body["mailboxes"]), body  # never another tenant's rows
    return [m for m in body["mailboxes"] if m["mailbox_id"].endswith(suffix)]


async def test_any_worker_answers_for_any_tenant_and_admin_sees_all(two: StatusCluster) -> None:
    now = datetime.now(UTC)
    events: list[Event] = []
    for t in TENANTS:
        events += [*session(t, f"{t}:one", at=now), mail(t, f"{t}:one", 1, at=now)]
    await two.publish(events)

    for worker in ("w1", "w2"):
        for t in TENANTS:
            async def idle(worker: str = worker, t: str = t) -> None:
                got = await rows(two, worker, t, ":one")
                assert [(m["state"], m["new_mails_today"]) for m in got] == [("idle", 1)]

            await eventually(idle)

    # Each worker holds some partitions, so each answered some tenants by forwarding.
    shares = []
    for worker in ("w1", "w2"):
        code, share = await two.get(worker, f"{API}/admin/local", two.tokens["admin"])
        assert code == 200 and share["partitions"], share
        shares.append(share)
    assert sorted(shares[0]["partitions"] + shares[1]["partitions"]) == list(range(PARTITIONS))
    for share in shares:
        for t in share["tenants"]:
            assert partition_for_key(t["tenant_id"].encode(), PARTITIONS) in share["partitions"]

    for worker in ("w1", "w2"):
        body = await spread_over(two, worker, {"w1", "w2"})
        assert [t["tenant_id"] for t in body["tenants"]] == sorted(TENANTS)
        assert body["counts"]["idle"] >= len(TENANTS)


async def test_a_killed_workers_tenants_move_to_the_survivor_and_come_back(
    two: StatusCluster,
) -> None:
    now = datetime.now(UTC)
    await two.publish(e for t in TENANTS for e in session(t, f"{t}:two", at=now))
    for t in TENANTS:
        async def idle(t: str = t) -> None:
            assert [m["state"] for m in await rows(two, "w1", t, ":two")] == ["idle"]

        await eventually(idle)

    two.kill("w2")
    killed_at = time.monotonic()

    async def all_on_w1() -> None:
        body = await spread_over(two, "w1", {"w1"})
        assert [t["tenant_id"] for t in body["tenants"]] == sorted(TENANTS)
        for t in TENANTS:
            assert [m["state"] for m in await rows(two, "w1", t, ":two")] == ["idle"]

    await eventually(all_on_w1, 60)
    takeover = time.monotonic() - killed_at
    print(f"takeover after SIGKILL: {takeover:.1f} s")

    # The survivor now also processes the dead worker's partitions.
    await two.publish(
        state(t, f"{t}:two", 6, S.ERROR, S.IDLE, at=now + timedelta(seconds=6), reason="reset")
        for t in TENANTS
    )
    for t in TENANTS:
        async def error(t: str = t) -> None:
            assert [m["state"] for m in await rows(two, "w1", t, ":two")] == ["error"]

        await eventually(error)

    two.start("w2")
    await two.ready("w2")
    await eventually(lambda: spread_over(two, "w2", {"w1", "w2"}), 60)
    for worker in ("w1", "w2"):
        for t in TENANTS:
            async def still_error(worker: str = worker, t: str = t) -> None:
                got = await rows(two, worker, t, ":two")
                assert [(m["state"], m["last_error"]["reason"]) for m in got] == [
                    ("error", "reset")
                ]

            await eventually(still_error)
