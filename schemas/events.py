"""Typed domain events, field for field the records of the `.avsc` files beside this module.

tests/schemas/test_codec.py checks that each dataclass has exactly its schema's fields, so the
two cannot drift apart silently.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import datetime
from typing import Any, ClassVar, Self

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


class MailboxAction(enum.StrEnum):
    START = "start"
    STOP = "stop"
    DELETE = "delete"


def _id(name: str) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def new_mail_event_id(
    tenant_id: str, mailbox_id: str, folder: str, uidvalidity: int, uid: int
) -> str:
    return _id(f"{tenant_id}/{mailbox_id}/{folder}/{uidvalidity}/{uid}")


def state_event_id(producer_id: str, mailbox_id: str, session_id: str, sequence: int) -> str:
    return _id(f"state/{producer_id}/{mailbox_id}/{session_id}/{sequence}")


def resync_event_id(
    tenant_id: str, mailbox_id: str, folder: str, old_uidvalidity: int, new_uidvalidity: int
) -> str:
    return _id(f"resync/{tenant_id}/{mailbox_id}/{folder}/{old_uidvalidity}/{new_uidvalidity}")


def command_event_id(mailbox_id: str, config_version: int, action: str) -> str:
    return _id(f"command/{mailbox_id}/{config_version}/{action}")


class _Record:
    """Conversion to and from fastavro's records. Enum fields travel as their symbol; `ENUMS`
    names each event's enum-typed fields so that reading restores the enum."""

    __slots__ = ()
    SCHEMA: ClassVar[str]
    ENUMS: ClassVar[dict[str, type[enum.StrEnum]]] = {}
    mailbox_id: str

    @property
    def key(self) -> bytes:
        """The Kafka record key: every event of a mailbox lands in the same partition."""
        return self.mailbox_id.encode()

    def to_record(self) -> dict[str, Any]:
        return {
            f.name: (v.value if isinstance(v := getattr(self, f.name), enum.Enum) else v)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        values = {f.name: record[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for name, kind in cls.ENUMS.items():
            if values[name] is not None:
                values[name] = kind(values[name])
        return cls(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class NewMailDetected(_Record):
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


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionStateChanged(_Record):
    SCHEMA: ClassVar[str] = "io.idlewire.events.ConnectionStateChanged"
    ENUMS: ClassVar[dict[str, type[enum.StrEnum]]] = {
        "state": ConnectionState,
        "previous_state": ConnectionState,
    }

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


@dataclasses.dataclass(frozen=True, slots=True)
class MailboxResynced(_Record):
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


@dataclasses.dataclass(frozen=True, slots=True)
class MailboxCommand(_Record):
    SCHEMA: ClassVar[str] = "io.idlewire.events.MailboxCommand"
    ENUMS: ClassVar[dict[str, type[enum.StrEnum]]] = {"action": MailboxAction}

    event_id: str
    tenant_id: str
    email_type: str
    mailbox_id: str
    action: MailboxAction
    config_version: int
    occurred_at: datetime


Event = NewMailDetected | ConnectionStateChanged | MailboxResynced | MailboxCommand
EVENT_TYPES: dict[str, type[Event]] = {
    cls.SCHEMA: cls
    for cls in (NewMailDetected, ConnectionStateChanged, MailboxResynced, MailboxCommand)
}
