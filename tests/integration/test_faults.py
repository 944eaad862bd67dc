"""Faults against the real stack: producer restart, Dovecot restart, half-open connections,
STARTTLS, certificate problems. Mail delivered during every outage must be published."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from infra import dovecot
from schemas.events import ConnectionState as S
from schemas.events import NewMailDetected
from tests.integration.helpers import Relay, mailbox, states, wait_for_state

pytestmark = pytest.mark.integration


def message(subject: str) -> bytes:
    return f"Subject: {subject}\r\nFrom: a@b.test\r\n\r\nbody\r\n".encode()


def deliver(user: str, subject: str) -> None:
    dovecot.deliver(user, message(subject))


def deliver_to_maildir(user: str, subject: str) -> None:
    """What an MTA does while the IMAP server is down: drop the file into Maildir/new."""
    maildir = dovecot.root() / "mail" / user / "Maildir"
    name = f"{time.time_ns()}.idlewire-test.{os.getpid()}"
    (maildir / "tmp" / name).write_bytes(message(subject))
    os.chown(maildir / "tmp" / name, dovecot.MAIL_UID, dovecot.MAIL_GID)
    os.rename(maildir / "tmp" / name, maildir / "new" / name)


async def new_mail(consumer, names, n, timeout=30.0):  # type: ignore[no-untyped-def]
    got = await consumer(names["IDLEWIRE_NEW_MAIL_TOPIC"], n, timeout)
    return [e for _, e in got if isinstance(e, NewMailDetected)]


async def test_mail_while_the_producer_is_down_is_published_after_restart(
    stack, names, imap_user, run_producer, consumer
):
    user = imap_user()
    first = run_producer([mailbox(stack, user)])
    await wait_for_state(consumer, names, S.IDLE)
    await asyncio.to_thread(deliver, user, "before stop")
    assert [e.uid for e in await new_mail(consumer, names, 1)] == [1]
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    for i in range(3):
        await asyncio.to_thread(deliver, user, f"while down {i}")
    run_producer([mailbox(stack, user)])
    await wait_for_state(consumer, names, S.IDLE, count=2)
    events = await new_mail(consumer, names, 4)
    assert [e.uid for e in events] == [1, 2, 3, 4]  # each exactly once
    assert [e.subject for e in events[1:]] == ["while down 0", "while down 1", "while down 2"]


async def test_dovecot_restart_mid_idle(stack, names, imap_user, run_producer, consumer):
    user = imap_user()
    proc = run_producer([mailbox(stack, user, reconnect_delay_seconds=0.5)])
    await wait_for_state(consumer, names, S.IDLE)
    await asyncio.sleep(1.5)  # hibernated, like most sessions in production
    await asyncio.to_thread(dovecot.down)
    try:
        deliver_to_maildir(user, "while the server is down")
    finally:
        await asyncio.to_thread(dovecot.up)
    seen = await wait_for_state(consumer, names, S.IDLE, count=2, timeout=60)
    errors = [e for e in seen if e.state is S.ERROR]
    assert errors and errors[0].error_class == "ConnectionLost"
    assert all(e.error_class in ("ConnectionLost", "ConnectFailed") for e in errors)
    events = await new_mail(consumer, names, 1)
    assert [e.subject for e in events] == ["while the server is down"]
    assert proc.poll() is None


async def test_half_open_connection_is_detected_and_replaced(
    stack, names, imap_user, run_producer, consumer
):
    relay = Relay(int(stack["IMAPS_PORT"]))
    port = await relay.start()
    try:
        user = imap_user()
        run_producer(
            [
                mailbox(
                    stack,
                    user,
                    host="127.0.0.1",
                    port=port,
                    heartbeat_seconds=2,
                    command_timeout_seconds=3,
                    reconnect_delay_seconds=0.2,
                )
            ]
        )
        await wait_for_state(consumer, names, S.IDLE)
        relay.freeze()
        await asyncio.to_thread(deliver, user, "sent into the void")
        seen = await wait_for_state(consumer, names, S.IDLE, count=2, timeout=30)
        lost = [e for e in seen if e.state is S.ERROR]
        assert lost[0].error_class == "ConnectionLost" and "no answer" in (lost[0].reason or "")
        # bound: heartbeat (2 s) + command timeout (3 s) + reconnect, with slack
        idle1 = next(e for e in seen if e.state is S.IDLE)
        assert (lost[0].occurred_at - idle1.occurred_at).total_seconds() < 2 + 3 + 3
        assert [e.subject for e in await new_mail(consumer, names, 1)] == ["sent into the void"]
    finally:
        await relay.close()


async def test_starttls(stack, names, imap_user, run_producer, consumer):
    user = imap_user()
    run_producer([mailbox(stack, user, security="starttls", port=int(stack["IMAP_PORT"]))])
    await wait_for_state(consumer, names, S.IDLE)
    await asyncio.to_thread(deliver, user, "over starttls")
    assert [e.subject for e in await new_mail(consumer, names, 1)] == ["over starttls"]


async def test_untrusted_certificate_stops_with_a_clear_error(
    stack, names, imap_user, run_producer, consumer
):
    user = imap_user()
    cfg = mailbox(stack, user)
    del cfg["ca_file"]  # system CAs do not know our test CA
    proc = run_producer([cfg])
    seen = await wait_for_state(consumer, names, S.ERROR)
    assert seen[-1].error_class == "TLSFailed"
    assert "CERTIFICATE_VERIFY_FAILED" in (seen[-1].reason or "")
    await asyncio.sleep(1)
    again = states(await consumer(names["IDLEWIRE_STATE_TOPIC"], 10**6, 2))
    assert sum(e.state is S.CONNECTING for e in again) == 1
    assert proc.poll() is None
