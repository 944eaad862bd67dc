"""`python -m bench.tls_memory`: where the memory of an idle TLS IMAP connection goes.

Each configuration runs in a fresh child process that opens C connections the way the producer
does (producers._imap.ImapConnection: connect, TLS, greeting, LOGIN, SELECT, IDLE) to distinct
Dovecot users and leaves them hibernated in IDLE. Reported per connection:
  rss      (VmRSS after - VmRSS before) / C        what the machine pays
  malloc   glibc in-use bytes delta / C            OpenSSL + large Python buffers (> 512 B)
  python   tracemalloc delta / C (--tracemalloc)   every Python allocation, by file
Before/after are taken after 20 warm-up connections and gc, so imports and one-time caches are
in the baseline. Every TLS configuration also fetches a 1 MiB message over a tuned connection
and checks its SHA-256, to prove a small read buffer does not break large responses.

    .venv/bin/python -m bench.tls_memory --connections 1000
    .venv/bin/python -m bench.tls_memory --connections 1000 --configs tls-256k,tls-4k --tracemalloc
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import hashlib
import json
import os
import random
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-pw"
PREFIX = "benchmem"
BIG_USER = "benchmem-big"
HOST = "127.0.0.1"

# name -> (tls, asyncio SSLProtocol.max_size, extra switches)
CONFIGS: dict[str, tuple[bool, int, tuple[str, ...]]] = {
    "plain": (False, 0, ()),
    "tls-256k": (True, 256 * 1024, ()),
    "tls-64k": (True, 64 * 1024, ()),
    "tls-17k": (True, 17 * 1024, ()),
    "tls-8k": (True, 8 * 1024, ()),
    "tls-4k": (True, 4 * 1024, ()),
    "tls-1k": (True, 1024, ()),
    "tls-4k-no-release-buffers": (True, 4 * 1024, ("no-release-buffers",)),
    "tls-4k-no-ticket": (True, 4 * 1024, ("no-ticket",)),
    "tls-4k-tls12": (True, 4 * 1024, ("tls12",)),
    "tls-4k-context-per-conn": (True, 4 * 1024, ("context-per-conn",)),
    "tls-1k-free-buffers": (True, 1024, ("free-buffers",)),
    "tls-1k-drop-peercert": (True, 1024, ("drop-peercert",)),
    # the floor's hand-written client (bench._rawimap on asyncio streams) instead of aioimaplib
    "raw-plain": (False, 0, ("raw",)),
    "raw-tls-1k": (True, 1024, ("raw",)),
}
DEFAULT_CONFIGS = "plain,tls-256k,tls-64k,tls-17k,tls-8k,tls-4k,tls-1k"


def _clear_release_buffers(ctx: ssl.SSLContext) -> None:
    """Turn SSL_MODE_RELEASE_BUFFERS off (CPython turns it on for every context) to see its worth.

    PySSLContext is PyObject_HEAD followed by `SSL_CTX *ctx`; SSL_CTRL_CLEAR_MODE is 78.
    """
    lib = ctypes.CDLL("libssl.so.3")
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    ptr = ctypes.c_void_p.from_address(id(ctx) + 16).value
    lib.SSL_CTX_ctrl(ptr, 78, 0x10, None)
    assert lib.SSL_CTX_ctrl(ptr, 33, 0, None) & 0x10 == 0


def _free_buffers(ssl_object: ssl.SSLObject) -> None:
    """SSL_free_buffers() on the connection (PySSLSocket: PyObject_HEAD, Socket, then SSL *)."""
    lib = ctypes.CDLL("libssl.so.3")
    lib.SSL_free_buffers.argtypes = [ctypes.c_void_p]
    ptr = ctypes.c_void_p.from_address(id(ssl_object._sslobj) + 24).value  # type: ignore[attr-defined]
    lib.SSL_free_buffers(ptr)


# ---- child ------------------------------------------------------------------------------------


async def _child(cfg: dict[str, Any]) -> dict[str, Any]:
    import asyncio.sslproto

    from bench._proc import malloc_in_use, rss_kib
    from producers import limits
    from producers._imap import ImapConnection
    from producers.config import shared_ssl_context

    tls, max_size, switches = CONFIGS[cfg["config"]]
    if tls:
        # Both levers, so that this child measures max_size whatever the project's default is.
        asyncio.sslproto.SSLProtocol.max_size = max_size
        if hasattr(limits, "TLS_READ_BUFFER_BYTES"):
            limits.TLS_READ_BUFFER_BYTES = max_size
    ca = cfg["ca_file"]

    def context() -> ssl.SSLContext | None:
        if not tls:
            return None
        if "context-per-conn" in switches:
            ctx = ssl.create_default_context(cafile=ca)
        else:
            ctx = shared_ssl_context(ca)
        if "no-ticket" in switches:
            ctx.options |= ssl.OP_NO_TICKET
        if "tls12" in switches:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if "no-release-buffers" in switches:
            _clear_release_buffers(ctx)
        return ctx

    port = cfg["imaps_port"] if tls else cfg["imap_port"]
    security = "tls" if tls else "plain"
    idlers: list[asyncio.Task[str]] = []
    conns: list[ImapConnection] = []
    sem = asyncio.Semaphore(50)

    async def one(user: str) -> None:
        if "raw" in switches:
            return await one_raw(user)
        async with sem:
            conn = await ImapConnection.open(HOST, port, security=security, ssl_context=context())
            await conn.login(user, PASSWORD)
            await conn.select("INBOX")
            conns.append(conn)
            idlers.append(asyncio.create_task(conn.idle(renew_after=3600, heartbeat=3600)))
            assert conn.transport is not None
            ssl_object = conn.transport.get_extra_info("ssl_object")
            if "free-buffers" in switches and ssl_object is not None:
                _free_buffers(ssl_object)
            if "drop-peercert" in switches and ssl_object is not None:
                # already done by ImapConnection.open() since the lean client (kept for old runs)
                conn.transport._ssl_protocol._extra.pop("peercert", None)  # type: ignore[attr-defined]

    raw_conns: list[Any] = []

    async def one_raw(user: str) -> None:
        from bench._rawimap import RawImap

        async with sem:
            conn = await RawImap.connect(HOST, port, context())
            await conn.login(user, PASSWORD)
            await conn.select("INBOX")
            raw_conns.append(conn)
            idlers.append(asyncio.create_task(conn.idle_forever(lambda n, t: None)))  # type: ignore[arg-type]

    users = [f"{PREFIX}{i}" for i in range(1, cfg["connections"] + 21)]
    await asyncio.gather(*(one(u) for u in users[:20]))
    await asyncio.sleep(2)
    gc.collect()
    if cfg["tracemalloc"]:
        import tracemalloc

        tracemalloc.start(1)
        snap0 = tracemalloc.take_snapshot()
    rss0, heap0 = rss_kib(os.getpid()), malloc_in_use()
    t0 = time.monotonic()
    await asyncio.gather(*(one(u) for u in users[20:]))
    t_open = time.monotonic() - t0
    await asyncio.sleep(3)  # hibernation, and settle
    gc.collect()
    rss1, heap1 = rss_kib(os.getpid()), malloc_in_use()
    n = cfg["connections"]
    result: dict[str, Any] = {
        "config": cfg["config"],
        "connections": n,
        "open_seconds": round(t_open, 2),
        "rss_kib_per_conn": round((rss1 - rss0) / n, 1),
        "malloc_kib_per_conn": round((heap1 - heap0) / 1024 / n, 1),
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "still_idle": sum(not t.done() for t in idlers),
    }
    if cfg["tracemalloc"]:
        snap1 = tracemalloc.take_snapshot()
        stats = snap1.compare_to(snap0, "lineno")
        result["python_kib_per_conn"] = round(sum(s.size_diff for s in stats) / 1024 / n, 1)
        result["python_top"] = [
            (str(s.traceback), round(s.size_diff / 1024 / n, 2), round(s.count_diff / n, 2))
            for s in stats[:12]
        ]
        tracemalloc.stop()
    if tls and cfg.get("big_uid"):
        result["big_fetch"] = await _big_fetch(cfg, port, context())
    for c in conns:
        c.abort()
    for r in raw_conns:
        r.close()
    return result


async def _big_fetch(cfg: dict[str, Any], port: int, ctx: ssl.SSLContext | None) -> dict[str, Any]:
    """Fetch the 1 MiB message over TLS (tuned buffer) 10 times; check bytes, wall and CPU time."""
    from producers._imap import ImapConnection

    conn = await ImapConnection.open(HOST, port, security="tls", ssl_context=ctx)
    await conn.login(BIG_USER, PASSWORD)
    await conn.select("INBOX")
    times, ok = [], True
    cpu0 = time.process_time()
    for _ in range(10):
        t0 = time.monotonic()
        resp = await conn._run("UID FETCH", str(cfg["big_uid"]).encode(), b"(BODY.PEEK[])")
        times.append(time.monotonic() - t0)
        bodies = [
            bytes(x) for x in resp.lines if isinstance(x, bytes | bytearray) and len(x) > 1000
        ]
        ok = ok and len(bodies) == 1 and hashlib.sha256(bodies[0]).hexdigest() == cfg["big_sha"]
    cpu_ms = (time.process_time() - cpu0) * 1000 / 10
    await conn.logout()
    times.sort()
    return {"ok": ok, "ms_median": round(times[5] * 1000, 1), "cpu_ms": round(cpu_ms, 1)}


# ---- parent -----------------------------------------------------------------------------------


def _big_message() -> bytes:
    rnd = random.Random(42)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    lines = [bytes(rnd.choice(alphabet) for _ in range(76)) for _ in range(13_500)]
    head = (
        b"Message-ID: <big-1mib@idlewire.bench>\r\nFrom: bench@idlewire.bench\r\n"
        b"Subject: one MiB\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    return head + b"\r\n".join(lines) + b"\r\n"


async def _ensure_big_message(imap_port: int) -> tuple[int, str]:
    from bench._rawimap import RawImap

    msg = _big_message()
    conn = await RawImap.connect(HOST, imap_port)
    await conn.login(BIG_USER, PASSWORD)
    exists = await conn.select("INBOX")
    if exists == 0:
        await conn.append(msg)
    _, lines = await conn.command("UID SEARCH ALL")
    uid = int(lines[0].split()[-1])
    await conn.logout()
    return uid, hashlib.sha256(msg).hexdigest()


def _wait_drain(ports: tuple[int, ...], limit: int, timeout: float) -> float:
    from bench._proc import server_connections

    t0 = time.monotonic()
    while server_connections(ports) > limit and time.monotonic() - t0 < timeout:
        time.sleep(0.5)
    return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.tls_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"any of {','.join(CONFIGS)}")
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_child(json.loads(args.child)))))
        return 0

    sys.path.insert(0, str(ROOT))
    from infra import dovecot
    from infra.__main__ import up

    stack = up()
    dovecot.add_users_with_passwords(
        {**{f"{PREFIX}{i}": PASSWORD for i in range(1, args.connections + 21)}, BIG_USER: PASSWORD}
    )
    imap_port, imaps_port = int(stack["IMAP_PORT"]), int(stack["IMAPS_PORT"])
    big_uid, big_sha = asyncio.run(_ensure_big_message(imap_port))
    baseline = __import__("bench._proc", fromlist=["x"]).server_connections((imap_port, imaps_port))
    results = []
    print(
        f"{'config':28} {'rss KiB/conn':>12} {'malloc KiB/conn':>15} {'python KiB/conn':>15} "
        f"{'open s':>7} {'1 MiB fetch wall/cpu':>20}",
        flush=True,
    )
    for name in args.configs.split(","):
        cfg = {
            "config": name,
            "connections": args.connections,
            "tracemalloc": args.tracemalloc,
            "ca_file": stack["IMAP_CA_FILE"],
            "imap_port": imap_port,
            "imaps_port": imaps_port,
            "big_uid": big_uid,
            "big_sha": big_sha,
        }
        proc = subprocess.run(
            [sys.executable, "-m", "bench.tls_memory", "--child", json.dumps(cfg)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            print(f"{name}: child failed\n{proc.stderr[-3000:]}", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        # Dovecot releases dropped hibernated clients at ~80/s: let it drain before the next one.
        r["drain_seconds"] = round(_wait_drain((imap_port, imaps_port), baseline + 20, 120), 1)
        results.append(r)
        big = r.get("big_fetch")
        big_s = (
            f"{'ok' if big['ok'] else 'CORRUPT'} {big['ms_median']:.0f}/{big['cpu_ms']:.0f} ms"
            if big
            else "-"
        )
        print(
            f"{name:28} {r['rss_kib_per_conn']:12.1f} {r['malloc_kib_per_conn']:15.1f} "
            f"{r.get('python_kib_per_conn', float('nan')):15.1f} {r['open_seconds']:7.1f} "
            f"{big_s:>20}",
            flush=True,
        )
        for site in r.get("python_top", [])[:8]:
            print(f"    {site[1]:7.2f} KiB {site[2]:6.2f} blocks  {site[0]}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
