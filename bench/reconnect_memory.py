"""`python -m bench.reconnect_memory`: does the producer's memory grow with every reconnect?

Runs the real `producers.manager.Manager` in this process (Kafka on throwaway topics, checkpoints
in memory) with N mailboxes, then restarts Dovecot R times. After start-up and after each
recovery (all sessions idle again, plus a settle) it records VmRSS, glibc malloc in use, and the
number of live Python objects per type, so growth can be told apart: objects that pile up are a
leak, RSS that grows while objects and malloc stay flat is fragmentation.

    .venv/bin/python -m bench.reconnect_memory --mailboxes 1000 --restarts 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _census() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


async def _all_idle(manager: Any, n: int, since: float, timeout: float) -> float | None:
    from schemas.events import ConnectionState

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        idle = sum(
            1
            for s in manager.sessions.values()
            if s.state is ConnectionState.IDLE and (s.counter.up_since or 0) >= since
        )
        if idle >= n:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


async def run(args: argparse.Namespace) -> None:
    from bench._proc import malloc_in_use, malloc_trim, rss_kib
    from infra import dovecot
    from infra.__main__ import up
    from producers.config import MailboxConfig, ProducerSettings
    from producers.manager import Manager

    stack = await asyncio.to_thread(up)
    users = [f"{args.prefix}{i}" for i in range(1, args.mailboxes + 1)]
    await asyncio.to_thread(dovecot.add_users_with_passwords, dict.fromkeys(users, args.password))
    run_id = uuid.uuid4().hex[:8]
    os.environ.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
            "IDLEWIRE_NEW_MAIL_TOPIC": f"bench.{run_id}.churn.new-mail",
            "IDLEWIRE_STATE_TOPIC": f"bench.{run_id}.churn.connection-state",
        }
    )
    manager = Manager(ProducerSettings())
    await manager.start()
    tls = not args.plain
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(args.tracemalloc)
        snap0 = tracemalloc.take_snapshot()
    for u in users:
        manager.watch(
            MailboxConfig.model_validate(
                {
                    "tenant_id": "bench",
                    "email_type": "churn",
                    "mailbox_id": f"bench:{u}",
                    "host": "127.0.0.1",
                    "port": int(stack["IMAPS_PORT" if tls else "IMAP_PORT"]),
                    "security": "tls" if tls else "plain",
                    "allow_plaintext": not tls,
                    "ca_file": stack["IMAP_CA_FILE"] if tls else None,
                    "username": u,
                    "password": args.password,
                }
            )
        )
    rows: list[tuple[str, int, int, float | None]] = []
    censuses: list[Counter[str]] = []
    pid = os.getpid()
    try:
        took = await _all_idle(manager, args.mailboxes, 0.0, 600)
        if args.tracemalloc:
            await asyncio.sleep(args.settle)
            gc.collect()
            snap1 = tracemalloc.take_snapshot()
            n = args.mailboxes
            stats = snap1.compare_to(snap0, "traceback" if args.tracemalloc > 1 else "lineno")
            total = sum(st.size_diff for st in stats)
            print(f"Python allocations per mailbox: {total / 1024 / n:.1f} KiB; top sites:")
            for st in stats[: args.top]:
                where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in st.traceback)
                print(
                    f"  {st.size_diff / 1024 / n:6.2f} KiB {st.count_diff / n:6.2f} blocks  {where}"
                )
            tracemalloc.stop()
        if args.gc_probe:
            await asyncio.sleep(args.settle)
            print(
                f"tracked objects: {len(gc.get_objects())}, thresholds {gc.get_threshold()}, "
                f"counts {gc.get_count()}",
                flush=True,
            )
            for gen in (0, 1, 2, 2):
                t0 = time.perf_counter()
                gc.collect(gen)
                print(f"gc.collect({gen}): {(time.perf_counter() - t0) * 1000:.1f} ms", flush=True)
            gc.freeze()
            t0 = time.perf_counter()
            gc.collect(2)
            print(f"after gc.freeze(): gc.collect(2) {(time.perf_counter() - t0) * 1000:.1f} ms")
            gc.unfreeze()
        if args.hold:
            await asyncio.sleep(args.settle)
            before, rss_a, heap_a = _census(), rss_kib(pid), malloc_in_use()
            print(
                f"holding {args.hold:.0f}s without mail (Dovecot's keepalive is every 2 min)",
                flush=True,
            )
            await asyncio.sleep(args.hold)
            after, rss_b, heap_b = _census(), rss_kib(pid), malloc_in_use()
            n = args.mailboxes
            print(
                f"while idle: RSS +{(rss_b - rss_a) / n:.2f} KiB/mailbox, malloc in use "
                f"+{(heap_b - heap_a) / 1024 / n:.2f} KiB/mailbox; objects per mailbox:"
            )
            grown = after.copy()
            grown.subtract(before)
            for name, _ in sorted(grown.items(), key=lambda kv: -abs(kv[1]))[:10]:
                print(f"  {name:40} {before[name] / n:8.2f} -> {after[name] / n:8.2f}")
        for i in range(args.restarts + 1):
            await asyncio.sleep(args.settle)
            censuses.append(_census())
            rows.append(
                (
                    f"after {'start-up' if i == 0 else f'restart {i}'}",
                    rss_kib(pid),
                    malloc_in_use(),
                    took,
                )
            )
            print(
                f"{rows[-1][0]:18} RSS {rows[-1][1] / 1024:7.1f} MiB  malloc in use "
                f"{rows[-1][2] / 2**20:7.1f} MiB  all idle after {took}",
                flush=True,
            )
            if i == args.restarts:
                break
            since = time.monotonic()
            await asyncio.to_thread(dovecot.restart)
            took = await _all_idle(manager, args.mailboxes, since, 300)
        malloc_trim()
        print(f"after malloc_trim(0): RSS {rss_kib(pid) / 1024:.1f} MiB", flush=True)
        n = args.mailboxes
        print("live objects per mailbox, first census -> last (types that changed most):")
        diff = censuses[-1].copy()
        diff.subtract(censuses[0])
        for name, _ in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:15]:
            print(f"  {name:40} {censuses[0][name] / n:8.2f} -> {censuses[-1][name] / n:8.2f}")
    finally:
        await manager.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.reconnect_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mailboxes", type=int, default=1000)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--plain", action="store_true")
    p.add_argument("--hold", type=float, default=0.0, help="seconds idle between two censuses")
    p.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="Python allocations per mailbox by site (frames of traceback)",
    )
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--gc-probe", action="store_true", help="time gc.collect() at N")
    p.add_argument("--settle", type=float, default=10.0)
    p.add_argument("--prefix", default="bench")
    p.add_argument("--password", default="bench-pw")
    args = p.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
