"""Shared fixtures. Integration fixtures start the real stack through infra/ (the same code as
`python -m infra up`) once per test session; unit tests never touch them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from infra.__main__ import up

    return up()


@pytest.fixture(scope="session")
def credential_keys() -> str:
    """The key ring of this test session's encrypted credentials (IDLEWIRE_CREDENTIAL_KEYS)."""
    from control.crypto import KeyRing

    return KeyRing.generate(f"test{uuid.uuid4().hex[:6]}")


@pytest.fixture
def names() -> dict[str, str]:
    """Topic names of this test alone, so tests never read each other's events."""
    run = uuid.uuid4().hex[:8]
    return {
        "IDLEWIRE_NEW_MAIL_TOPIC": f"test.{run}.new-mail",
        "IDLEWIRE_STATE_TOPIC": f"test.{run}.connection-state",
        "run": run,
    }


@pytest.fixture
def imap_user(stack: dict[str, str]) -> Callable[[str], str]:
    from infra import dovecot

    def make(password: str = "s3cret-pw") -> str:
        user = f"u{uuid.uuid4().hex[:10]}@test.idlewire"
        dovecot.add_user(user, password)
        return user

    return make


@pytest.fixture
def run_producer(
    stack: dict[str, str], names: dict[str, str], tmp_path: Path, credential_keys: str
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `python -m producers --mailboxes FILE` as a real separate process."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        mailboxes: list[dict[str, Any]], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        cfg = tmp_path / f"mailboxes-{len(procs)}.json"
        cfg.write_text(json.dumps(mailboxes))
        full_env = {
            **os.environ,
            **stack,
            **{k: v for k, v in names.items() if k != "run"},
            "IDLEWIRE_CREDENTIAL_KEYS": credential_keys,
            **(env or {}),
        }
        log = (tmp_path / f"producer-{len(procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "producers", "--mailboxes", str(cfg)],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        proc.log_path = Path(log.name)  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
async def consumer(stack: dict[str, str]) -> AsyncIterator[Callable[..., Any]]:
    """`await read(topic, n, timeout)`: the first n decoded events of a topic, from the start."""
    from aiokafka import AIOKafkaConsumer

    from schemas.codec import decode

    consumers: list[AIOKafkaConsumer] = []

    async def read(
        topic: str, n: int, timeout: float = 30.0, until: Callable[[list[Any]], bool] | None = None
    ) -> list[Any]:
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            group_id=f"test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        consumers.append(c)
        await c.start()
        out: list[Any] = []
        try:
            async with asyncio.timeout(timeout):
                while len(out) < n and not (until and until(out)):
                    batch = await c.getmany(timeout_ms=200)
                    for records in batch.values():
                        out += [(r, decode(r.value)) for r in records]
        except TimeoutError:
            pass
        return out

    yield read
    for c in consumers:
        await c.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def control_env(
    stack: dict[str, str], names: dict[str, str], credential_keys: str
) -> dict[str, str]:
    """Environment of control-plane and group-mode producer processes of one test."""
    return {
        **os.environ,
        **stack,
        **{k: v for k, v in names.items() if k != "run"},
        "IDLEWIRE_CREDENTIAL_KEYS": credential_keys,
        "IDLEWIRE_COMMAND_TOPIC": f"test.{names['run']}.commands",
        "IDLEWIRE_GROUP_ID": f"test-{names['run']}",
    }


def control_cli(env: dict[str, str], *args: str, stdin: bytes = b"") -> str:
    out = subprocess.run(
        [sys.executable, "-m", "control", *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode().strip()


@pytest.fixture
def control_api(control_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """`python -m control serve` as a real process; yields its base URL."""
    import time
    import urllib.request

    port = free_port()
    log = (tmp_path / "control-api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "control", "serve", "--port", str(port)],
        env=control_env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "control-api.log").read_text()) from None
            time.sleep(0.1)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
