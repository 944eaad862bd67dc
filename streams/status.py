"""The status table's logic: `apply(tenant_status, event) -> tenant_status`, pure.

The table holds one `TenantStatus` per tenant: the rows of all its mailboxes. Events arrive at
least once and, across producer sessions, not necessarily in order, so every field group carries
what it needs to stay correct under duplicates and reordering:

- the connection state (state, previous state, since, producer) changes only for an event that
  is *after* the one that set it: within one session by `sequence` (the producer's own counter,
  immune to wall-clock steps), across sessions by `occurred_at`, ties broken by session id so
  the outcome never depends on arrival order. A duplicate is never after itself, so it is a no-op;
- the last error has its own position, so a late error still replaces an older recorded one;
- new mail is counted once per (folder, UIDVALIDITY, UID), which is once per event id
  (streams.seen_uids explains why this beats a list of recent ids);
- any other event type changes nothing. `MailboxResynced` (a new UIDVALIDITY) in particular:
  counted UIDs are kept per UIDVALIDITY already, so the new numbering cannot collide with the old.

`apply` returns the very same object when an event changes nothing, so callers can skip the
changelog write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from schemas.events import ConnectionState, ConnectionStateChanged, Event, NewMailDetected
from streams import seen_uids
from streams.limits import MAX_ERROR_TEXT_CHARS, MAX_MAILBOXES_PER_TENANT


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """Where a state event sits in a mailbox's history."""

    occurred_at: datetime
    session_id: str
    sequence: int

    def is_after(self, other: Position) -> bool:
        if self.session_id == other.session_id:
            return self.sequence > other.sequence
        return (self.occurred_at, self.session_id) > (other.occurred_at, other.session_id)


@dataclasses.dataclass(frozen=True, slots=True)
class LastError:
    reason: str | None
    error_class: str | None
    position: Position


@dataclasses.dataclass(frozen=True, slots=True)
class MailboxStatus:
    tenant_id: str
    email_type: str
    mailbox_id: str
    state: ConnectionState | None = None  # None until the first state event arrives
    previous_state: ConnectionState | None = None
    position: Position | None = None  # of the event that set `state`
    producer_id: str | None = None
    last_error: LastError | None = None
    reconnects: int = 0  # accepted `error -> connecting` transitions
    last_new_mail_at: datetime | None = None
    mail_day: date | None = None  # UTC day of the newest counted mail
    mails_on_day: int = 0
    seen: seen_uids.SeenUids = ()

    @property
    def since(self) -> datetime | None:
        return self.position.occurred_at if self.position else None

    def new_mails_on(self, day: date) -> int:
        return self.mails_on_day if self.mail_day == day else 0


@dataclasses.dataclass(frozen=True, slots=True)
class TenantStatus:
    tenant_id: str
    mailboxes: Mapping[str, MailboxStatus]  # by mailbox_id; never mutated, replaced
    # Events for mailboxes beyond MAX_MAILBOXES_PER_TENANT: visible in the API, not silently lost.
    untracked_events: int = 0


def empty(tenant_id: str) -> TenantStatus:
    return TenantStatus(tenant_id, {})


def apply(tenant: TenantStatus | None, event: Event) -> TenantStatus:
    """The tenant's status after `event`; the same object if the event changes nothing."""
    if tenant is None:
        tenant = empty(event.tenant_id)
    if not isinstance(event, ConnectionStateChanged | NewMailDetected):
        return tenant
    if event.tenant_id != tenant.tenant_id:
        raise ValueError(f"event of tenant {event.tenant_id!r} applied to {tenant.tenant_id!r}")
    row = tenant.mailboxes.get(event.mailbox_id)
    if row is None and len(tenant.mailboxes) >= MAX_MAILBOXES_PER_TENANT:
        return dataclasses.replace(tenant, untracked_events=tenant.untracked_events + 1)
    new = apply_to_mailbox(row, event)
    if new is row:
        return tenant
    return dataclasses.replace(tenant, mailboxes={**tenant.mailboxes, event.mailbox_id: new})


def apply_to_mailbox(
    row: MailboxStatus | None, event: ConnectionStateChanged | NewMailDetected
) -> MailboxStatus:
    if row is None:
        row = MailboxStatus(event.tenant_id, event.email_type, event.mailbox_id)
    if isinstance(event, ConnectionStateChanged):
        return _apply_state(row, event)
    return _apply_new_mail(row, event)


def _apply_state(row: MailboxStatus, event: ConnectionStateChanged) -> MailboxStatus:
    at = Position(event.occurred_at, event.session_id, event.sequence)
    changes: dict[str, Any] = {}
    if row.position is None or at.is_after(row.position):
        changes.update(
            state=event.state,
            previous_state=event.previous_state,
            position=at,
            producer_id=event.producer_id,
            email_type=event.email_type,
        )
        # Counted only for an accepted (newer) event: duplicates cannot inflate it. A reconnect
        # that arrives after a newer event is not counted (docs/streams.md, "Table logic").
        S = ConnectionState
        if event.state is S.CONNECTING and event.previous_state is S.ERROR:
            changes["reconnects"] = row.reconnects + 1
    if event.state is ConnectionState.ERROR and (
        row.last_error is None or at.is_after(row.last_error.position)
    ):
        changes["last_error"] = LastError(_clip(event.reason), _clip(event.error_class), at)
    return dataclasses.replace(row, **changes) if changes else row


def _clip(text: str | None) -> str | None:
    return text[:MAX_ERROR_TEXT_CHARS] if text else text


def _apply_new_mail(row: MailboxStatus, event: NewMailDetected) -> MailboxStatus:
    if seen_uids.seen(row.seen, event.folder, event.uidvalidity, event.uid):
        return row
    day = event.detected_at.astimezone(UTC).date()
    mail_day, count = row.mail_day, row.mails_on_day
    if mail_day is None or day > mail_day:
        mail_day, count = day, 1
    elif day == mail_day:
        count += 1
    # else: a late mail of an earlier day; it is remembered as seen but is not "today's".
    last = row.last_new_mail_at
    return dataclasses.replace(
        row,
        seen=seen_uids.record(row.seen, event.folder, event.uidvalidity, event.uid),
        mail_day=mail_day,
        mails_on_day=count,
        last_new_mail_at=event.detected_at if last is None else max(last, event.detected_at),
        producer_id=row.producer_id or event.producer_id,
    )
