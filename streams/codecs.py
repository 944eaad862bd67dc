"""Faust codecs: Kafka bytes <-> our frozen dataclasses, registered by name.

`idlewire_avro` reads and writes events as Avro single-object encoding through schemas.codec (the
same bytes the producers write). `idlewire_tenant_status` is the table's changelog format.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from faust.serializers import codecs

from schemas import codec as avro
from schemas.events import ConnectionStateChanged, Event, MailboxResynced, NewMailDetected
from streams import changelog_format
from streams.status import TenantStatus

AVRO_EVENTS = "idlewire_avro"
TENANT_STATUS = "idlewire_tenant_status"


@dataclasses.dataclass(frozen=True, slots=True)
class Undecodable:
    """A value that is not an event we can read. Returned instead of raised: an exception from a
    codec crashes the agent reading the topic (Faust's supervisor restarts it, logging a
    traceback per bad record; docs/streams.md, findings). One bad record is one warning line."""

    reason: str
    size: int


class AvroEventCodec(codecs.Codec):
    def _loads(self, s: bytes) -> Event | Undecodable:
        try:
            return avro.decode(s)
        except avro.DecodeError as exc:
            return Undecodable(str(exc), len(s))

    def _dumps(self, s: Any) -> bytes:
        if not isinstance(s, NewMailDetected | ConnectionStateChanged | MailboxResynced):
            raise TypeError(f"not an idlewire event: {type(s).__name__}")
        return avro.encode(s)


class TenantStatusCodec(codecs.Codec):
    def _loads(self, s: bytes) -> TenantStatus:
        return changelog_format.loads(s)

    def _dumps(self, s: Any) -> bytes:
        if not isinstance(s, TenantStatus):
            raise TypeError(f"not a TenantStatus: {type(s).__name__}")
        return changelog_format.dumps(s)


def register() -> None:
    """Idempotent; must run before the app declares topics or tables using the names."""
    codecs.register(AVRO_EVENTS, AvroEventCodec())
    codecs.register(TENANT_STATUS, TenantStatusCodec())
