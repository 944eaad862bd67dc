"""Schemas parse, round-trip, keep their wire format, and evolve compatibly."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import fastavro
import pytest

from schemas import codec
from schemas.codec import MAGIC, DecodeError, SchemaSet
from schemas.events import (
    EVENT_TYPES,
    ConnectionState,
    ConnectionStateChanged,
    MailboxResynced,
    NewMailDetected,
    new_mail_event_id,
    resync_event_id,
)

T0 = datetime(2026, 11, 24, 3, 0, 0, 123456, tzinfo=UTC)

MAIL = NewMailDetected(
    event_id=new_mail_event_id("acme", "acme:reservations", "INBOX", 1732, 42),
    tenant_id="acme",
    email_type="reservations",
    mailbox_id="acme:reservations",
    folder="INBOX",
    uidvalidity=1732,
    uid=42,
    message_id="<b-1@hotel.test>",
    from_address="Jürgen <j@hotel.test>",
    subject="Booking 7 nights",
    date=datetime(2026, 11, 24, 2, 59, 58, tzinfo=UTC),
    internal_date=datetime(2026, 11, 24, 2, 59, 59, tzinfo=UTC),
    size=1234,
    detected_at=T0,
    producer_id="pod-1",
)
STATE = ConnectionStateChanged(
    event_id="0b7c1f04-87c1-5b0e-9a3e-0d2f0f8d7a11",
    tenant_id="acme",
    email_type="reservations",
    mailbox_id="acme:reservations",
    state=ConnectionState.ERROR,
    previous_state=ConnectionState.AUTHENTICATING,
    reason="login rejected",
    error_class="AuthenticationFailed",
    attempt=1,
    producer_id="pod-1",
    session_id="s1",
    sequence=4,
    occurred_at=T0,
)
RESYNC = MailboxResynced(
    event_id=resync_event_id("acme", "acme:reservations", "INBOX", 1732, 1800),
    tenant_id="acme",
    email_type="reservations",
    mailbox_id="acme:reservations",
    folder="INBOX",
    old_uidvalidity=1732,
    new_uidvalidity=1800,
    resume_after_uid=17,
    producer_id="pod-1",
    occurred_at=T0,
)

# Wire format pinned: if these change, every consumer in the field breaks. Add a new schema
# version (and keep the old one in schemas/history/) instead of editing these.
GOLDEN_HEX = {
    "NewMailDetected": (
        "c3015af19c9f894dbc754865396361366336632d326164352d356336612d616166352d6665316362383663"
        "356136610861636d65187265736572766174696f6e732261636d653a7265736572766174696f6e730a494e"
        "424f58881b5402203c622d3140686f74656c2e746573743e022c4ac3bc7267656e203c6a40686f74656c2e"
        "746573743e0220426f6f6b696e672037206e696768747302e0bef7b7c16802b0cef7b7c168a41380b9c5ff"
        "9cbfb0060a706f642d31"
    ),
    "ConnectionStateChanged": (
        "c3017f5bc74d597b932b4830623763316630342d383763312d356230652d396133652d3064326630663864"
        "376131310861636d65187265736572766174696f6e732261636d653a7265736572766174696f6e730c0206"
        "021c6c6f67696e2072656a6563746564022841757468656e7469636174696f6e4661696c6564020a706f64"
        "2d310473310880b9c5ff9cbfb006"
    ),
}


@pytest.mark.parametrize("path", sorted(codec.SCHEMA_DIR.glob("*.avsc")), ids=lambda p: p.name)
def test_every_schema_parses(path):
    fastavro.parse_schema(json.loads(path.read_text()))


@pytest.mark.parametrize("event", [MAIL, STATE, RESYNC], ids=lambda e: type(e).__name__)
def test_round_trip(event):
    data = codec.encode(event)
    assert data[:2] == MAGIC
    assert codec.decode(data) == event


@pytest.mark.parametrize("event", [MAIL, STATE], ids=lambda e: type(e).__name__)
def test_golden_bytes(event):
    assert codec.encode(event).hex() == GOLDEN_HEX[type(event).__name__]


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()), ids=lambda c: c.__name__)
def test_dataclass_mirrors_schema(cls):
    schema = codec.default_schemas().current[cls.SCHEMA]
    assert [f["name"] for f in schema["fields"]] == [f.name for f in dataclasses.fields(cls)]


def test_fingerprint_is_the_avro_spec_crc64():
    # Avro spec test vector: fingerprint64('"int"') == 0x7275d51a3f395c8f, little-endian on wire.
    assert codec._fingerprint("int") == (0x7275D51A3F395C8F).to_bytes(8, "little")


def test_unknown_fingerprint_and_garbage_are_clear_errors():
    data = bytearray(codec.encode(MAIL))
    data[2] ^= 0xFF
    with pytest.raises(DecodeError, match="unknown writer schema"):
        codec.decode(bytes(data))
    with pytest.raises(DecodeError, match="magic"):
        codec.decode(b"{}")
    with pytest.raises(DecodeError, match="corrupt"):
        codec.decode(codec.encode(MAIL)[:20])


def test_old_writer_new_reader(tmp_path):
    """A record written by an older schema (fewer fields) is read with the new fields' defaults."""
    current = json.loads((codec.SCHEMA_DIR / "new_mail_detected.avsc").read_text())
    old = dict(current, fields=[f for f in current["fields"] if f["name"] != "subject"])
    old_path = tmp_path / "old.avsc"
    old_path.write_text(json.dumps(old))
    writer_only = SchemaSet([old_path])
    record = {k: v for k, v in MAIL.to_record().items() if k != "subject"}
    data = writer_only.encode_record(NewMailDetected.SCHEMA, record)
    reader = SchemaSet(sorted(codec.SCHEMA_DIR.glob("*.avsc")), [old_path])
    name, decoded = reader.decode_record(data)
    assert name == NewMailDetected.SCHEMA
    assert decoded["subject"] is None and decoded["uid"] == 42
