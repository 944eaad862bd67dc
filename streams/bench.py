"""`python -m streams.bench`: how fast the status app absorbs events and answers queries.

    .venv/bin/python -m streams.bench                 # 10,000 mailboxes, 1 worker
    .venv/bin/python -m streams.bench --workers 2     # queries also measure forwarding

Against the local stack (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL from the environment or
`python -m infra env`), with its own topics, app id and tenants, all removed afterwards:

1. publish every mailbox's events (a full session, connecting .. idle, plus new mails) to the
   source topics, keyed by mailbox_id and encoded exactly as the producers do;
2. start the worker(s) and time from "ready" until the consumer group has committed every
   source and repartition offset: events/second absorbed (committed offsets trail processing by
   at most Faust's commit interval, 2.8 s, which the figure includes);
3. time sequential status queries over HTTP (keep-alive, one client): per tenant and per email
   type, p50/p99; and a few admin/all answers (every row).

A benchmark, not a test: it asserts nothing and prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from control import auth, db
from schemas.codec import encode
from schemas.events import (
    ConnectionState,
    ConnectionStateChanged,
    Event,
    NewMailDetected,
    new_mail_event_id,
    state_event_id,
)
from streams import changelog_format, status

EMAIL_TYPES = ("reservations", "groups", "info")
HAPPY = (
    ConnectionState.CONNECTING,
    ConnectionState.CONNECTED,
    ConnectionState.AUTHENTICATING,
    ConnectionState.AUTHENTICATED,
    ConnectionState.IDLE,
)
API = "/api/email/idle"


def mailbox_events(tenant: str, n: int, mails: int, now: datetime) -> list[Event]:
    mailbox, email_type = f"{tenant}:mb{n}", EMAIL_TYPES[n % len(EMAIL_TYPES)]
    out: list[Event] = []
    prev = ConnectionState.DISCONNECTED
    for seq, to in enumerate(HAPPY, 1):
        out.append(ConnectionStateChanged(
            event_id=state_event_id("bench", mailbox, "s1", seq), tenant_id=tenant,
            email_type=email_type, mailbox_id=mailbox, state=to, previous_state=prev,
            reason=None, error_class=None, attempt=0, producer_id="bench", session_id="s1",
            sequence=seq, occurred_at=now + timedelta(milliseconds=seq)))
        prev = to
    for uid in range(1, mails + 1):
        out.append(NewMailDetected(
            event_id=new_mail_event_id(tenant, mailbox, "INBOX", 1, uid), tenant_id=tenant,
            email_type=email_type, mailbox_id=mailbox, folder="INBOX", uidvalidity=1, uid=uid,
            message_id=f"<{uid}.{mailbox}@bench>", from_address="guest@example.com",
            subject="Reservation request", date=now, internal_date=now, size=4096,
            detected_at=now, producer_id="bench"))
    return out


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def publish(bootstrap: str, topics: dict[str, str], events: list[Event]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for e in events:
            topic = topics["mail" if isinstance(e, NewMailDetected) else "state"]
            pending.append(await producer.send(topic, encode(e), key=e.key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


class LagProbe:
    """Records in some topics a consumer group has not committed yet. One long-lived client
    pair: aiokafka 0.14 can raise CancelledError from stop() of a consumer stopped right after
    start, so they are not created per poll."""

    def __init__(self, bootstrap: str) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)

    async def start(self) -> None:
        await self._admin.start()
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def lag(self, group: str, topics: list[str]) -> int:
        """-1 while a topic is not known yet."""
        await self._consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics
               for p in self._consumer.partitions_for_topic(t) or ()]
        if len({tp.topic for tp in tps}) < len(topics):
            return -1
        end = await self._consumer.end_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(group)
        return sum(
            max(0, o - (committed[tp].offset if tp in committed else 0)) for tp, o in end.items()
        )


class Workers:
    def __init__(self, env: dict[str, str], tmp: Path, count: int) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        for i in range(count):
            port = 18600 + random.randrange(1000)
            log = (tmp / f"worker-{i}.log").open("wb")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "--web-port", str(port),
                 "--data-dir", str(tmp / f"w{i}"), "--loglevel", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT))
            self.urls.append(f"http://127.0.0.1:{port}")

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for url in self.urls:
            while True:
                if any(p.poll() is not None for p in self.procs):
                    raise SystemExit("a worker exited; see its log")
                try:
                    async with http.get(f"{url}{API}/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


async def timed_get(http: aiohttp.ClientSession, url: str, token: str) -> tuple[float, int]:
    t = time.perf_counter()
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        await r.read()
        return time.perf_counter() - t, r.status


def in_process_figures(events: list[Event], tenants: list[str]) -> dict[str, float]:
    """The pure table logic alone: apply + changelog encoding per event, and value sizes."""
    table: dict[str, status.TenantStatus] = {}
    started = time.perf_counter()
    for e in events:
        new = status.apply(table.get(e.tenant_id), e)
        changelog_format.dumps(new)
        table[e.tenant_id] = new
    elapsed = time.perf_counter() - started
    sizes = [len(changelog_format.dumps(t)) for t in table.values()]
    return {"events_per_s": len(events) / elapsed, "value_bytes_max": max(sizes),
            "value_bytes_mean": statistics.mean(sizes)}


async def run(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    database_url = os.environ.get(
        "DATABASE_URL", "postgresql://idlewire:idlewire@127.0.0.1:15432/idlewire")
    run_id = uuid.uuid4().hex[:8]
    topics = {"state": f"bench.{run_id}.connection-state", "mail": f"bench.{run_id}.new-mail"}
    app_id = f"bench-{run_id}-status"
    tenants = [f"bench-{run_id}-{i}" for i in range(args.tenants)]
    per_tenant = args.mailboxes // args.tenants
    now = datetime.now(UTC)
    events = [e for t in tenants for n in range(per_tenant)
              for e in mailbox_events(t, n, args.mails, now)]
    # Interleave tenants as live traffic would, keeping each mailbox's own order.
    rnd = random.Random(1)
    by_mailbox: dict[str, list[Event]] = {}
    for e in events:
        by_mailbox.setdefault(e.mailbox_id, []).append(e)
    queues = list(by_mailbox.values())
    events = []
    while queues:
        q = rnd.choice(queues)
        events.append(q.pop(0))
        if not q:
            queues.remove(q)
    print(f"{len(tenants)} tenants x {per_tenant} mailboxes = {len(by_mailbox)} mailboxes, "
          f"{len(events)} events, {args.workers} worker(s), {args.partitions} partitions")
    print("in-process apply+encode:", {k: round(v) for k, v in
                                       in_process_figures(events, tenants).items()})

    tmp = Path(tempfile.mkdtemp(prefix="idlewire-bench-"))
    pool = await db.connect(database_url)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    workers: Workers | None = None
    sample = tenants[: args.credentials]
    try:
        tokens: dict[str, str] = {}
        for t in sample:
            await pool.execute("INSERT INTO tenants (tenant_id, name) VALUES ($1, $1)", t)
            tokens[t] = await auth.create_credential(pool, tenant_id=t)
        admin_token = await auth.create_credential(pool, tenant_id=sample[0], is_admin=True)

        from streams._kafka import ensure_topics

        await ensure_topics(bootstrap, list(topics.values()), 6)
        took = await publish(bootstrap, topics, events)
        print(f"published {len(events)} events in {took:.1f} s ({len(events) / took:.0f}/s)")

        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database_url,
               "IDLEWIRE_STATE_TOPIC": topics["state"], "IDLEWIRE_NEW_MAIL_TOPIC": topics["mail"],
               "IDLEWIRE_STREAMS_APP_ID": app_id,
               "IDLEWIRE_STREAMS_PARTITIONS": str(args.partitions)}
        workers = Workers(env, tmp, args.workers)
        await workers.ready(http)
        ready_at = time.monotonic()
        watched = [*topics.values(), f"{app_id}-events-by-tenant"]
        deadline = ready_at + args.timeout
        probe = LagProbe(bootstrap)
        await probe.start()
        try:
            while (behind := await probe.lag(app_id, watched)) != 0:
                if time.monotonic() > deadline:
                    raise SystemExit(f"not absorbed after {args.timeout} s: {behind} behind")
                await asyncio.sleep(0.5)
        finally:
            await probe.stop()
        absorbed = time.monotonic() - ready_at
        print(f"absorbed {len(events)} events in {absorbed:.1f} s: "
              f"{len(events) / absorbed:.0f} events/s (from ready to all offsets committed)")

        # Let the group settle (a second worker may still be rebalancing), then query.
        for url in workers.urls:
            while (code := (await timed_get(http, f"{url}{API}/admin/all", admin_token))[1]) != 200:
                if time.monotonic() > deadline:
                    raise SystemExit(f"admin/all still answers {code}")
                await asyncio.sleep(0.5)
        for label, path in (("per tenant", "/status"), ("per type", "/status/groups")):
            samples = []
            for i in range(args.queries):
                t = sample[i % len(sample)]
                url = workers.urls[i % len(workers.urls)]
                took, code = await timed_get(http, f"{url}{API}{path}", tokens[t])
                assert code == 200, code
                samples.append(took * 1000)
            print(f"GET {API}{path} ({label}, {args.queries} sequential): "
                  f"p50 {percentile(samples, 0.5):.2f} ms, p99 {percentile(samples, 0.99):.2f} ms")
        admin_samples = [(await timed_get(http, f"{workers.urls[0]}{API}/admin/all",
                                          admin_token))[0] * 1000 for _ in range(5)]
        print(f"GET {API}/admin/all ({len(by_mailbox)} rows, 5 sequential): "
              f"median {statistics.median(admin_samples):.0f} ms")
    finally:
        if workers is not None:
            workers.stop()
        await http.close()
        await pool.execute("DELETE FROM tenants WHERE tenant_id = ANY($1::text[])", sample)
        await pool.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics()
                    if t.startswith((f"bench.{run_id}.", f"bench-{run_id}-"))]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()
        if not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"worker logs in {tmp}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m streams.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mailboxes", type=int, default=10_000)
    p.add_argument("--tenants", type=int, default=1_000)
    p.add_argument("--mails", type=int, default=2, help="new mails per mailbox")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--queries", type=int, default=2_000, help="per query kind")
    p.add_argument("--credentials", type=int, default=100, help="tenants that get a token")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for absorption")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main(sys.argv[1:])

