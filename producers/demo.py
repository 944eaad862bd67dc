"""`python -m producers.demo`: the whole pipeline once, on the local stack.

Starts Kafka, PostgreSQL and Dovecot (infra/), creates a demo mailbox, runs a real producer
process on it, delivers a reservation mail into Dovecot and prints the decoded event as a
separate Kafka consumer reads it, with how long detection took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from producers._kafka import ensure_topics
from schemas.codec import decode
from schemas.events import ConnectionState, ConnectionStateChanged, NewMailDetected

ROOT = Path(__file__).resolve().parents[1]
DEMO_USER, DEMO_PASSWORD = "demo@idlewire.test", "demo-password"


async def _next_event(
    consumer: AIOKafkaConsumer, want: type, timeout: float, state: ConnectionState | None = None
) -> tuple[object, float]:
    async with asyncio.timeout(timeout):
        while True:
            record = await consumer.getone()
            event = decode(record.value)
            if not isinstance(event, want):
                continue
            if state is None or (
                isinstance(event, ConnectionStateChanged) and event.state is state
            ):
                return event, time.time()


async def main() -> int:
    sys.path.insert(0, str(ROOT))
    from infra import dovecot
    from infra.__main__ import up

    print("== starting the local stack (Kafka, PostgreSQL, Dovecot, OAuth server) ...", flush=True)
    stack = up()
    for k, v in stack.items():
        print(f"   {k}={v}")
    dovecot.add_user(DEMO_USER, DEMO_PASSWORD)
    run = uuid.uuid4().hex[:6]
    topics = {
        "IDLEWIRE_NEW_MAIL_TOPIC": "idlewire.new-mail",
        "IDLEWIRE_STATE_TOPIC": "idlewire.connection-state",
    }
    cfg = [
        {
            "tenant_id": "demo-hotel",
            "email_type": "reservations",
            "host": "localhost",
            "port": int(stack["IMAPS_PORT"]),
            "security": "tls",
            "ca_file": stack["IMAP_CA_FILE"],
            "username": DEMO_USER,
            "password_env": "DEMO_IMAP_PASSWORD",
        }
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    env = {
        **os.environ,
        **stack,
        **topics,
        "DEMO_IMAP_PASSWORD": DEMO_PASSWORD,
        "IDLEWIRE_PRODUCER_ID": f"demo-{run}",
    }

    await ensure_topics(stack["KAFKA_BOOTSTRAP_SERVERS"], list(topics.values()))
    consumers = {}
    for name, topic in (
        ("state", topics["IDLEWIRE_STATE_TOPIC"]),
        ("mail", topics["IDLEWIRE_NEW_MAIL_TOPIC"]),
    ):
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            group_id=f"demo-{name}-{run}",
            auto_offset_reset="latest",
        )
        consumers[name] = c
    print("== starting an IDLE producer process on the demo mailbox", flush=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "producers", "--mailboxes", f.name], cwd=ROOT, env=env
    )
    try:
        for c in consumers.values():
            await c.start()
        await _next_event(consumers["state"], ConnectionStateChanged, 60, ConnectionState.IDLE)
        await consumers["mail"].seek_to_end()
        await asyncio.sleep(1.5)  # let Dovecot hibernate the IDLE session (faster wake-up)
        print("== producer is IDLE; delivering a reservation mail into Dovecot", flush=True)
        message = (
            f"Message-ID: <{uuid.uuid4().hex}@booking.example>\r\n"
            f"From: Booking Platform <noreply@booking.example>\r\nTo: {DEMO_USER}\r\n"
            f"Subject: New reservation: 2 nights, arrival 2026-12-24\r\n"
            f"Date: {email.utils.format_datetime(datetime.now(UTC))}\r\n\r\n"
            "Guest: Ada Lovelace\r\nRoom: double\r\n"
        ).encode()
        t_sent = time.time()
        await asyncio.to_thread(dovecot.deliver, DEMO_USER, message)
        t_delivered = time.time()
        event, t_read = await _next_event(consumers["mail"], NewMailDetected, 30)
        assert isinstance(event, NewMailDetected)
        print("== NewMailDetected read from Kafka topic idlewire.new-mail:")
        for field in dataclasses.fields(event):
            print(f"   {field.name:14} {getattr(event, field.name)}")
        detect_ms = (event.detected_at.timestamp() - t_delivered) * 1000
        print(f"== delivery finished -> producer detected the UID: {detect_ms:.1f} ms")
        print(f"== delivery started  -> event read from Kafka:   {(t_read - t_sent) * 1000:.1f} ms")
        return 0
    except TimeoutError:
        print("demo failed: no event in time (see the producer's log above)", file=sys.stderr)
        return 1
    finally:
        for c in consumers.values():
            await c.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        os.unlink(f.name)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
