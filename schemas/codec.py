"""Avro single-object encoding of idlewire events.

Every encoded value is `C3 01` + the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
schema's canonical form + the Avro binary body (Avro 1.8+ specification, "Single-object
encoding"). A reader looks the writer schema up by fingerprint among the schemas it ships (the
current `.avsc` files and the frozen past versions in `history/`) and resolves it to the current
schema, so no schema registry is needed and a consumer can always tell which schema wrote a
record. docs/decisions.md explains the choice.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.events import EVENT_TYPES, Event

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
SCHEMA_DIR = Path(__file__).resolve().parent


class DecodeError(ValueError):
    """A value that is not a single-object-encoded idlewire event we know (not retriable)."""


def _fingerprint(parsed: Any) -> bytes:
    # fastavro returns the CRC-64-AVRO digest as hex of its little-endian bytes, as the spec wants.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class SchemaSet:
    """The current schema of each event type, plus every older writer schema we can still read."""

    def __init__(self, current: Iterable[Path], history: Iterable[Path] = ()) -> None:
        self.current: dict[str, Any] = {}
        self.fingerprints: dict[str, bytes] = {}
        self.writers: dict[bytes, tuple[str, Any]] = {}
        for path in current:
            parsed = cast(dict[str, Any], fastavro.parse_schema(json.loads(path.read_text())))
            name = parsed["name"]
            self.current[name] = parsed
            self.fingerprints[name] = _fingerprint(parsed)
            self.writers[self.fingerprints[name]] = (name, parsed)
        for path in history:
            old = cast(dict[str, Any], fastavro.parse_schema(json.loads(path.read_text())))
            self.writers.setdefault(_fingerprint(old), (old["name"], old))

    def encode_record(self, name: str, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(self.fingerprints[name])
        fastavro.schemaless_writer(out, self.current[name], record)
        return out.getvalue()

    def decode_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (bad magic)")
        writer = self.writers.get(data[2:HEADER_SIZE])
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {data[2:HEADER_SIZE].hex()}")
        name, writer_schema = writer
        reader_schema = self.current.get(name)
        if reader_schema is None:
            raise DecodeError(f"no current schema for {name}")
        try:
            record = fastavro.schemaless_reader(
                io.BytesIO(data[HEADER_SIZE:]), writer_schema, reader_schema
            )
        except (EOFError, ValueError, IndexError) as exc:
            raise DecodeError(f"corrupt {name} body: {exc}") from exc
        if not isinstance(record, dict):
            raise DecodeError(f"{name} body is not a record")
        return name, record


@cache
def default_schemas() -> SchemaSet:
    return SchemaSet(
        sorted(SCHEMA_DIR.glob("*.avsc")), sorted((SCHEMA_DIR / "history").glob("*.avsc"))
    )


def encode(event: Event) -> bytes:
    return default_schemas().encode_record(event.SCHEMA, event.to_record())


def decode(data: bytes) -> Event:
    name, record = default_schemas().decode_record(data)
    return EVENT_TYPES[name].from_record(record)
