"""Event builders shared by the streams tests (plain functions, no fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import (
    ConnectionState,
    ConnectionStateChanged,
    NewMailDetected,
    new_mail_event_id,
    state_event_id,
)

T0 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=UTC)
# The happy path of one session, as producers.states allows it.
HAPPY = [
    ConnectionState.CONNECTING,
    ConnectionState.CONNECTED,
    ConnectionState.AUTHENTICATING,
    ConnectionState.AUTHENTICATED,
    ConnectionState.IDLE,
]


def state(
    tenant: str,
    mailbox: str,
    seq: int,
    to: ConnectionState,
    prev: ConnectionState | None = None,
    *,
    email_type: str = "reservations",
    session: str = "s1",
    producer: str = "p1",
    at: datetime | None = None,
    reason: str | None = None,
    error_class: str | None = None,
) -> ConnectionStateChanged:
    return ConnectionStateChanged(
        event_id=state_event_id(producer, mailbox, session, seq),
        tenant_id=tenant,
        email_type=email_type,
        mailbox_id=mailbox,
        state=to,
        previous_state=prev,
        reason=reason,
        error_class=error_class,
        attempt=0,
        producer_id=producer,
        session_id=session,
        sequence=seq,
        occurred_at=at or T0 + timedelta(seconds=seq),
    )


def session(
    tenant: str,
    mailbox: str,
    states: list[ConnectionState] = HAPPY,
    **kw: object,
) -> list[ConnectionStateChanged]:
    prev: list[ConnectionState | None] = [ConnectionState.DISCONNECTED, *states[:-1]]
    return [
        state(tenant, mailbox, i + 1, s, p, **kw)  # type: ignore[arg-type]
        for i, (s, p) in enumerate(zip(states, prev, strict=True))
    ]


def mail(
    tenant: str,
    mailbox: str,
    uid: int,
    *,
    email_type: str = "reservations",
    folder: str = "INBOX",
    uidvalidity: int = 7,
    at: datetime | None = None,
    producer: str = "p1",
) -> NewMailDetected:
    return NewMailDetected(
        event_id=new_mail_event_id(tenant, mailbox, folder, uidvalidity, uid),
        tenant_id=tenant,
        email_type=email_type,
        mailbox_id=mailbox,
        folder=folder,
        uidvalidity=uidvalidity,
        uid=uid,
        message_id=f"<{uid}@test>",
        from_address="res@hotel.test",
        subject=f"Reservation {uid}",
        date=None,
        internal_date=None,
        size=1234,
        detected_at=at or T0 + timedelta(minutes=uid),
        producer_id=producer,
    )
