"""One status worker as a real process: events in Kafka -> table -> HTTP; auth; a restart.

Tests share the worker but never each other's tenants, so any order works; the restart test
leaves a running worker behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import ConnectionState as S
from tests.streams.conftest import StatusCluster, eventually, make_cluster, unique_tenants
from tests.streams.events import mail, session, state

pytestmark = pytest.mark.integration

TENANTS = ("acme", "beta", "gamma", "delta")


@pytest.fixture(scope="module")
async def one(stack: dict[str, str], module_tmp: Path) -> AsyncIterator[StatusCluster]:
    async for cluster in make_cluster(stack, module_tmp, unique_tenants(*TENANTS)):
        cluster.start("w1")
        await cluster.ready("w1")
        yield cluster


def tid(cluster: StatusCluster, short: str) -> str:
    return next(t for t in cluster.tokens if t.endswith(f"-{short}"))


async def status_of(cluster: StatusCluster, tenant: str, worker: str = "w1",
                    path: str = "/api/email/idle/status") -> dict[str, Any]:
    code, body = await cluster.get(worker, path, cluster.tokens[tenant])
    assert code == 200, (code, body)
    assert isinstance(body, dict)
    return body


def by_mailbox(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mailbox_id"]: m for m in body["mailboxes"]}


async def test_events_become_rows_duplicates_and_late_events_do_not_count(
    one: StatusCluster,
) -> None:
    acme, beta = tid(one, "acme"), tid(one, "beta")
    now = datetime.now(UTC)
    m1, m2, b1 = f"{acme}:res", f"{acme}:groups", f"{beta}:res"
    s1 = session(acme, m1, at=now)
    s1 = [dataclasses.replace(e, occurred_at=now + timedelta(seconds=e.sequence)) for e in s1]
    s2 = session(acme, m2, [S.CONNECTING, S.ERROR], email_type="groups", at=now)
    s2[1] = dataclasses.replace(s2[1], reason="LOGIN rejected", error_class="AuthenticationFailed")
    mails = [mail(acme, m1, uid, at=now) for uid in (1, 2)]
    await one.publish([
        *s1, *mails, mails[1],  # uid 2 published twice (a producer replay)
        s1[2],  # a late, older state event after `idle`
        *s2, *session(beta, b1, at=now),
    ])

    async def rows() -> dict[str, Any]:
        body = await status_of(one, acme)
        got = by_mailbox(body)
        assert set(got) == {m1, m2}
        assert got[m1]["state"] == "idle" and got[m1]["new_mails_today"] == 2
        assert got[m2]["state"] == "error"
        return body

    body = await eventually(rows)
    got = by_mailbox(body)
    assert body["counts"]["idle"] == 1 and body["counts"]["error"] == 1
    assert got[m1]["previous_state"] == "authenticated"
    assert got[m1]["since"] == s1[-1].occurred_at.isoformat()
    assert got[m1]["last_new_mail_at"] == now.isoformat()
    assert got[m1]["producer_id"] == "p1" and got[m1]["email_type"] == "reservations"
    assert got[m2]["last_error"] == {
        "reason": "LOGIN rejected",
        "error_class": "AuthenticationFailed",
        "at": s2[1].occurred_at.isoformat(),
    }

    by_type = await status_of(one, acme, path="/api/email/idle/status/groups")
    assert [m["mailbox_id"] for m in by_type["mailboxes"]] == [m2]
    assert by_type["email_type"] == "groups" and by_type["counts"]["error"] == 1
    code, _ = await one.get("w1", "/api/email/idle/status/billing", one.tokens[acme])
    assert code == 404

    # beta sees its own mailbox only, and acme never sees beta's.
    beta_body = await eventually(lambda: _one_row(one, beta))
    assert [m["mailbox_id"] for m in beta_body["mailboxes"]] == [b1]
    assert b1 not in by_mailbox(await status_of(one, acme))


async def _one_row(cluster: StatusCluster, tenant: str) -> dict[str, Any]:
    body = await status_of(cluster, tenant)
    assert len(body["mailboxes"]) == 1
    return body


async def test_credentials_are_checked_and_scoped(one: StatusCluster) -> None:
    acme = tid(one, "acme")
    api = "/api/email/idle"
    for path in (f"{api}/status", f"{api}/status/reservations", f"{api}/admin/all"):
        assert (await one.get("w1", path, None))[0] == 401
        assert (await one.get("w1", path, "iw_000000000000_" + "a" * 43))[0] == 401
        assert (await one.get("w1", path, one.tokens[acme][:-1] + "x"))[0] == 401
    assert (await one.get("w1", f"{api}/admin/all", one.tokens[acme]))[0] == 403
    assert (await one.get("w1", f"{api}/admin/local", one.tokens[acme]))[0] == 403
    # An admin not bound to a tenant has no "own" status.
    assert (await one.get("w1", f"{api}/status", one.tokens["root"]))[0] == 403
    assert (await one.get("w1", f"{api}/status/" + "x" * 101, one.tokens[acme]))[0] == 404
    code, body = await one.get("w1", f"{api}/admin/all", one.tokens["root"])
    assert code == 200 and body["workers"] == [one.workers["w1"].url]
    # Faust's own pages would show any tenant's rows and the cluster layout without a credential.
    for path in ("/table/", "/table/tenant-status/", "/router/", "/stats/", "/assignment/",
                 "/graph/"):
        assert (await one.get("w1", path, None))[0] == 404, path


async def test_an_undecodable_record_is_skipped(one: StatusCluster) -> None:
    gamma = tid(one, "gamma")
    await one.publish([(one.env["IDLEWIRE_STATE_TOPIC"], b"\xc3\x01not-avro"),
                       (one.env["IDLEWIRE_NEW_MAIL_TOPIC"], b"{}"),
                       *session(gamma, f"{gamma}:res")])
    body = await eventually(lambda: _one_row(one, gamma))
    assert body["mailboxes"][0]["state"] == "idle"
    assert one.workers["w1"].alive()
    assert "Crashed" not in one.workers["w1"].log.read_text()


async def test_a_killed_worker_restarts_with_its_tables_rebuilt_from_the_changelog(
    one: StatusCluster,
) -> None:
    delta = tid(one, "delta")
    now = datetime.now(UTC)
    mbox = f"{delta}:res"
    await one.publish([*session(delta, mbox, at=now),
                       *(mail(delta, mbox, uid, at=now) for uid in range(1, 6))])

    async def five() -> dict[str, Any]:
        body = await _one_row(one, delta)
        assert body["mailboxes"][0]["new_mails_today"] == 5
        return body

    before = await eventually(five)
    one.kill("w1")  # SIGKILL: no commit, no flush; a fresh data dir on restart
    await one.publish([mail(delta, mbox, 3, at=now), state(delta, mbox, 6, S.ERROR, S.IDLE,
                                                           at=now + timedelta(seconds=6))])
    one.start("w1")
    await one.ready("w1")

    async def recovered() -> dict[str, Any]:
        body = await _one_row(one, delta)
        assert body["mailboxes"][0]["state"] == "error"
        return body

    after = await eventually(recovered)
    # Everything from before survived; the replayed uid 3 and any re-read uncommitted events
    # were not counted again.
    assert after["mailboxes"][0]["new_mails_today"] == 5
    assert after["mailboxes"][0]["last_new_mail_at"] == before["mailboxes"][0]["last_new_mail_at"]
    assert after["mailboxes"][0]["previous_state"] == "idle"
