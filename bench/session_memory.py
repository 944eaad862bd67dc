"""`python -m bench.session_memory`: what one watched mailbox costs inside the producer, by source.

Runs the producer's real `Manager` in this process (Kafka publisher, connect gate, sessions,
IMAP client) on N TLS mailboxes of the local Dovecot, after a warm-up of 10 mailboxes, and
reports per mailbox once all N are IDLE and hibernated:
  rss       VmRSS delta / N
  malloc    glibc in-use delta / N (OpenSSL, and Python objects > 512 bytes)
  python    with --tracemalloc: Python allocations delta / N, by file and by line
tracemalloc itself inflates RSS and slows start-up: read `rss` from a run without it.

    .venv/bin/python -m bench.session_memory --mailboxes 1000
    .venv/bin/python -m bench.session_memory --mailboxes 1000 --tracemalloc --top 25
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._proc import malloc_in_use, rss_kib  # noqa: E402
from infra import dovecot  # noqa: E402
from infra.__main__ import up  # noqa: E402
from producers.config import MailboxConfig, ProducerSettings  # noqa: E402
from producers.manager import Manager  # noqa: E402
from schemas.events import ConnectionState  # noqa: E402

WARM_UP = 10


async def _all_idle(manager: Manager, n: int, timeout: float) -> float:
    t0 = time.monotonic()
    while sum(s.state is ConnectionState.IDLE for s in manager.sessions.values()) < n:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"not all {n} mailboxes reached idle within {timeout:.0f}s")
        await asyncio.sleep(0.2)
    return time.monotonic() - t0


async def run(args: argparse.Namespace) -> None:
    stack = up()
    users = [f"{args.prefix}{i}" for i in range(1, args.mailboxes + WARM_UP + 1)]
    dovecot.add_users_with_passwords(dict.fromkeys(users, args.password))
    run_id = uuid.uuid4().hex[:8]
    settings = ProducerSettings(
        kafka_bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        new_mail_topic=f"bench.{run_id}.mem.new-mail",
        state_topic=f"bench.{run_id}.mem.connection-state",
    )
    manager = Manager(settings)
    await manager.start()
    configs = [
        MailboxConfig(
            tenant_id="bench",
            email_type="mem",
            mailbox_id=f"bench:{u}",
            host="127.0.0.1",
            port=int(stack["IMAPS_PORT"]),
            ca_file=stack["IMAP_CA_FILE"],
            username=u,
            password=args.password,
        )
        for u in users
    ]
    try:
        for cfg in configs[:WARM_UP]:
            manager.watch(cfg)
        await _all_idle(manager, WARM_UP, 60)
        await asyncio.sleep(args.settle)
        gc.collect()
        rss0, malloc0 = rss_kib(os.getpid()), malloc_in_use()
        if args.tracemalloc:
            tracemalloc.start(1)
        snap0 = tracemalloc.take_snapshot() if args.tracemalloc else None
        for cfg in configs[WARM_UP:]:
            manager.watch(cfg)
        elapsed = await _all_idle(manager, len(configs), 120 + args.mailboxes / 20)
        await asyncio.sleep(args.settle)  # Dovecot hibernates 1 s after IDLE; our side settles
        gc.collect()
        n = args.mailboxes
        print(
            f"{n} TLS mailboxes idle in {elapsed:.1f} s; per mailbox: "
            f"rss {(rss_kib(os.getpid()) - rss0) / n:.1f} KiB, "
            f"malloc in use {(malloc_in_use() - malloc0) / 1024 / n:.1f} KiB"
        )
        if snap0 is not None:
            snap1 = tracemalloc.take_snapshot()
            for key in ("filename", "lineno"):
                stats = snap1.compare_to(snap0, key)
                total = sum(s.size_diff for s in stats)
                print(f"\npython allocations per mailbox by {key}: {total / n / 1024:.2f} KiB")
                for s in stats[: args.top]:
                    frame = s.traceback[0]
                    where = (
                        frame.filename if key == "filename" else f"{frame.filename}:{frame.lineno}"
                    )
                    print(f"{s.size_diff / n:8.0f} B {s.count_diff / n:6.1f} objects  {where}")
    finally:
        await manager.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.session_memory", description=__doc__)
    p.add_argument("--mailboxes", type=int, default=1000)
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--prefix", default="bench")
    p.add_argument("--password", default="bench-pw")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
