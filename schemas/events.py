"""Typed domain events, field for field the records of the `.avsc` files beside this module.

tests/schemas/test_events.py checks that each dataclass has exactly its schema's fields, so the
two cannot drift apart silently.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import datetime
from typing import Any, ClassVar

# Fixed namespace for deterministic event ids: the same (tenant, mailbox, folder, UIDVALIDITY,
# UID) gives the same id in every producer process, forever. Never change it.
EVENT_ID_NAMESPACE = uuid.UUID("5d1b6a0e-7f42-4c8e-9a57-1d0e3c2b7a10")


class ConnectionState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"
    IDLE = "idle"
    ERROR = "error"


def new_mail_event_id(
    tenant_id: str, mailbox_id: str, folder: str, uidvalidity: int, uid: int
) -> str:
    name = f"{tenant_id}/{mailbox_id}/{folder}/{uidvalidity}/{uid}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def state_event_id(producer_id: str, mailbox_id: str, session_id: str, sequence: int) -> str:
    return str(
        uuid.uuid5(EVENT_ID_NAMESPACE, f"state/{producer_id}/{mailbox_id}/{session_id}/{sequence}")
    )


@dataclasses.dataclass(frozen=True, slots=True)
class NewMailDetected:
    SCHEMA: ClassVar[str] = "io.idlewire.events.NewMailDetected"

    event_id: str
    tenant_id: str
    email_type: str
    mailbox_id: str
    folder: str
    uidvalidity: int
    uid: int
    message_id: str | None
    from_address: str | None
    subject: str | None
    date: datetime | None
    internal_date: datetime | None
    size: int
    detected_at: datetime
    producer_id: str

    @property
    def key(self) -> bytes:
        return self.mailbox_id.encode()

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> NewMailDetected:
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    SCHEMA: ClassVar[str] = "io.idlewire.events.ConnectionStateChanged"

    event_id: str
    tenant_id: str
    email_type: str
    mailbox_id: str
    state: ConnectionState
    previous_state: ConnectionState | None
    reason: str | None
    error_class: str | None
    attempt: int
    producer_id: str
    session_id: str
    sequence: int
    occurred_at: datetime

    @property
    def key(self) -> bytes:
        return self.mailbox_id.encode()

    def to_record(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["state"] = self.state.value
        record["previous_state"] = self.previous_state.value if self.previous_state else None
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ConnectionStateChanged:
        values = {f.name: record[f.name] for f in dataclasses.fields(cls)}
        values["state"] = ConnectionState(values["state"])
        if values["previous_state"] is not None:
            values["previous_state"] = ConnectionState(values["previous_state"])
        return cls(**values)


def resync_event_id(
    tenant_id: str, mailbox_id: str, folder: str, old_uidvalidity: int, new_uidvalidity: int
) -> str:
    name = f"resync/{tenant_id}/{mailbox_id}/{folder}/{old_uidvalidity}/{new_uidvalidity}"
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


@dataclasses.dataclass(frozen=True, slots=True)
class MailboxResynced:
    SCHEMA: ClassVar[str] = "io.idlewire.events.MailboxResynced"

    event_id: str
    tenant_id: str
    email_type: str
    mailbox_id: str
    folder: str
    old_uidvalidity: int
    new_uidvalidity: int
    resume_after_uid: int
    producer_id: str
    occurred_at: datetime

    @property
    def key(self) -> bytes:
        return self.mailbox_id.encode()

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MailboxResynced:
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls)})


class MailboxAction(enum.StrEnum):
    START = "start"
    STOP = "stop"
    DELETE = "delete"


@dataclasses.dataclass(frozen=True, slots=True)
class MailboxCommand:
    SCHEMA: ClassVar[str] = "io.idlewire.events.MailboxCommand"

    event_id: str
    tenant_id: str
    email_type: str
    mailbox_id: str
    action: MailboxAction
    config_version: int
    occurred_at: datetime

    @property
    def key(self) -> bytes:
        return self.mailbox_id.encode()

    def to_record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "action": self.action.value}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MailboxCommand:
        values = {f.name: record[f.name] for f in dataclasses.fields(cls)}
        values["action"] = MailboxAction(values["action"])
        return cls(**values)


def command_event_id(mailbox_id: str, config_version: int, action: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"command/{mailbox_id}/{config_version}/{action}"))


Event = NewMailDetected | ConnectionStateChanged | MailboxResynced | MailboxCommand
EVENT_TYPES: dict[str, type[Event]] = {
    NewMailDetected.SCHEMA: NewMailDetected,
    ConnectionStateChanged.SCHEMA: ConnectionStateChanged,
    MailboxResynced.SCHEMA: MailboxResynced,
    MailboxCommand.SCHEMA: MailboxCommand,
}
