"""End to end on the real stack: Dovecot -> IDLE producer process -> Kafka -> a consumer."""

from __future__ import annotations

import asyncio
import email.utils
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from infra import dovecot
from schemas.events import ConnectionState as S
from schemas.events import NewMailDetected, new_mail_event_id
from tests.integration.helpers import mailbox, states, wait_for_state

pytestmark = pytest.mark.integration


async def test_new_mail_reaches_kafka_with_every_field(
    stack, names, imap_user, run_producer, consumer
):
    user = imap_user()
    proc = run_producer([mailbox(stack, user)], env={"IDLEWIRE_TRACES": "console"})
    seen = await wait_for_state(consumer, names, S.IDLE)
    assert [e.state for e in seen] == [
        S.CONNECTING,
        S.CONNECTED,
        S.AUTHENTICATING,
        S.AUTHENTICATED,
        S.IDLE,
    ]
    assert all(e.tenant_id == "acme" and e.mailbox_id == f"acme:{user}" for e in seen)
    assert [e.sequence for e in seen] == [1, 2, 3, 4, 5]

    msg_id = f"<{uuid.uuid4().hex}@hotel.test>"
    sent = datetime(2026, 11, 24, 10, 30, 0, tzinfo=UTC)
    message = (
        f"Message-ID: {msg_id}\r\nFrom: =?utf-8?q?Hotel_M=C3=BCller?= <res@hotel.test>\r\n"
        f"To: {user}\r\nSubject: =?utf-8?q?Reservierung_f=C3=BCr_2?=\r\n"
        f"Date: {email.utils.format_datetime(sent)}\r\n\r\nRoom 12, 3 nights.\r\n"
    ).encode()
    before = datetime.now(UTC)
    await asyncio.to_thread(dovecot.deliver, user, message)

    got = await consumer(names["IDLEWIRE_NEW_MAIL_TOPIC"], 1, 30)
    assert len(got) == 1, "no NewMailDetected within 30 s"
    record, event = got[0]
    assert isinstance(event, NewMailDetected)
    assert record.key == f"acme:{user}".encode()
    assert dict(record.headers)["event_id"] == event.event_id.encode()
    assert event.tenant_id == "acme" and event.email_type == "reservations"
    assert event.mailbox_id == f"acme:{user}" and event.folder == "INBOX"
    assert event.uid == 1 and event.uidvalidity > 0
    assert event.event_id == new_mail_event_id(
        "acme", f"acme:{user}", "INBOX", event.uidvalidity, 1
    )
    assert event.message_id == msg_id
    assert event.from_address == "Hotel Müller <res@hotel.test>"
    assert event.subject == "Reservierung für 2"
    assert event.date == sent
    assert event.size == len(message)
    assert event.internal_date is not None
    assert abs(event.internal_date - before) < timedelta(seconds=5)
    assert before <= event.detected_at <= datetime.now(UTC)
    assert event.producer_id == seen[0].producer_id
    # the trace follows the mail into Kafka: W3C context in the headers, spans with our ids
    headers = dict(record.headers)
    assert headers["traceparent"].startswith(b"00-")
    trace_id = headers["traceparent"].split(b"-")[1].decode()
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    spans = proc.log_path.read_text()
    assert f'"trace_id": "0x{trace_id}"' in spans
    assert '"idlewire.mailbox_id": "acme:' in spans and '"name": "kafka.publish"' in spans


async def test_mail_during_a_server_side_kick_is_published_after_reconnect(
    stack, names, imap_user, run_producer, consumer
):
    user = imap_user()
    proc = run_producer([mailbox(stack, user, reconnect_delay_seconds=0.2)])
    await wait_for_state(consumer, names, S.IDLE)
    await asyncio.to_thread(dovecot.kick, user)
    for i in range(3):
        await asyncio.to_thread(dovecot.deliver, user, f"Subject: m{i}\r\n\r\nx\r\n".encode())
    got = await consumer(names["IDLEWIRE_NEW_MAIL_TOPIC"], 3, 30)
    assert sorted(e.uid for _, e in got) == [1, 2, 3]
    assert len({e.event_id for _, e in got}) == 3
    seen = states(await consumer(names["IDLEWIRE_STATE_TOPIC"], 10**6, 3))
    assert [e.state for e in seen].count(S.IDLE) == 2  # it did reconnect
    assert proc.poll() is None


async def test_wrong_password_is_a_clear_error_without_retry_loop(
    stack, names, imap_user, run_producer, consumer
):
    user = imap_user()
    proc = run_producer([mailbox(stack, user, password="wrong", reconnect_delay_seconds=0.1)])
    seen = await wait_for_state(consumer, names, S.ERROR)
    err = seen[-1]
    assert err.error_class == "AuthenticationFailed"
    assert "AUTHENTICATIONFAILED" in (err.reason or "") and "wrong" not in (err.reason or "")
    await asyncio.sleep(2)
    again = states(await consumer(names["IDLEWIRE_STATE_TOPIC"], 10**6, 3))
    assert sum(e.state is S.CONNECTING for e in again) == 1, "retried a rejected password"
    assert proc.poll() is None
    assert "wrong" not in proc.log_path.read_text()


async def test_unreachable_server_backs_off_with_error_events(
    stack, names, imap_user, run_producer, consumer
):
    proc = run_producer([mailbox(stack, "nobody", port=1, reconnect_delay_seconds=0.2)])
    started = time.monotonic()
    got = await consumer(
        names["IDLEWIRE_STATE_TOPIC"],
        10**6,
        20,
        until=lambda evs: sum(e.state is S.ERROR for e in states(evs)) >= 3,
    )
    errors = [e for e in states(got) if e.state is S.ERROR]
    assert len(errors) >= 3
    assert all(e.error_class == "ConnectFailed" for e in errors)
    assert "cannot connect to localhost:1" in (errors[0].reason or "")
    assert [e.attempt for e in errors[:3]] == [1, 2, 3]
    assert time.monotonic() - started > 0.1 + 0.2 + 0.4 - 0.5  # backoff, not a hot loop
    assert proc.poll() is None
