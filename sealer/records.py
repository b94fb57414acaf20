"""Turning Kafka records into sealable envelopes, or into dead letters with a reason.

Two shapes are accepted on the events topic (documented in docs/kafka-messages.md):

* a canonical envelope (what ingest and the producer library send): stored byte for byte;
* a plain event object from any Kafka client: wrapped into an envelope whose ``received_at`` is
  the record's timestamp, then canonicalized.

Anything else (not JSON, not an object, a non-canonical envelope, a schema violation, too large)
becomes a :class:`Rejected` with the reason, which the sealer sends to the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import orjson

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.errors import InvalidEvent, NonCanonicalEnvelope
from auditlog.core.schema import (
    NO_CUSTOM_SCHEMAS,
    Schema,
    Schemas,
    validate_event,
    validate_signature_fields,
)
from sealer.timestamps import received_micros

MAX_RECORD_BYTES = 1024 * 1024
CANONICAL_PREFIX = b'{"event":'


class Record(Protocol):
    """The parts of an aiokafka ``ConsumerRecord`` the sealer reads."""

    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]: ...


class Prepared(NamedTuple):
    """A record's share of its seal, for logs of hash scheme ``scheme``: made by
    ``sealer.rows.prepare``, which imports this module (never the other way round)."""

    scheme: str
    leaf: bytes  # its leaf hash
    entry: bytes  # its log entry, as its entry bundle holds it
    tail: tuple[object, ...]  # its events row after (log_id, idx), in rows.EVENT_COLUMNS order


# Not frozen: a frozen dataclass's __init__ costs three times as much, and the sealer builds
# one of these per record. Only the fetch loop sets `prepared`, once, after decode().
@dataclass(slots=True)
class Sealable:
    offset: int
    envelope: Envelope
    received_us: int  # received_at in microseconds since 2000 (sealer/timestamps.py)
    idempotency_key: str | None
    config_id: str | None = None
    # Its row, entry and leaf hash, worked out by the fetch loop while the batch fills
    # (sealer/rows.py); a seal makes them itself when this is None.
    prepared: Prepared | None = None


@dataclass(slots=True)
class Rejected:
    offset: int
    reason: str
    record: Record


def _header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def _schema_errors(obj: Mapping[str, object], envelope: bool, schema: Schema) -> str | None:
    errors = validate_event(obj.get("event") if envelope else obj, "/event", schema)
    if envelope:
        errors += validate_signature_fields(obj, "")
    if errors:
        return "; ".join(f"{e['source']}: {e['detail']}" for e in errors[:5])
    return None


def decode(record: Record, schemas: Schemas = NO_CUSTOM_SCHEMAS) -> Sealable | Rejected:
    value = record.value
    if not value:
        return Rejected(record.offset, "empty record value", record)
    if len(value) > MAX_RECORD_BYTES:
        return Rejected(
            record.offset, f"record is {len(value)} bytes, limit {MAX_RECORD_BYTES}", record
        )
    headers = record.headers
    idempotency_key = _header(record, "idempotency-key") if headers else None
    config_id = _header(record, "config-id") if headers else None
    schema = schemas.for_config(config_id)
    if schema is None:
        return Rejected(record.offset, f"no audit schema for config-id {config_id!r}", record)
    if value.startswith(CANONICAL_PREFIX):
        # The hot path: ingest and the producer library send canonical envelopes, whose
        # sorted keys always start with "event". Parsed once, by the strict constructor.
        try:
            envelope = Envelope.from_bytes(value)
        except NonCanonicalEnvelope as exc:
            return Rejected(record.offset, f"invalid envelope: {exc}", record)
        except InvalidEvent:
            pass  # not an envelope after all: judged below as what it claims to be
        else:
            if (
                schema.valid(envelope.event)
                and envelope.signature is None
                and envelope.public_key is None
            ):
                return Sealable(
                    record.offset,
                    envelope,
                    # The envelope checked its received_at's spelling already.
                    received_micros(envelope.received_at),
                    idempotency_key,
                    config_id,
                )
            return _Context(record, idempotency_key, config_id).seal(envelope, schema)
    return _decode_json(value, schema, _Context(record, idempotency_key, config_id))


@dataclass(frozen=True, slots=True)
class _Context:
    record: Record
    idempotency_key: str | None
    config_id: str | None

    def reject(self, reason: str) -> Rejected:
        return Rejected(self.record.offset, reason, self.record)

    def seal(self, envelope: Envelope, schema: Schema) -> Sealable | Rejected:
        reason = _schema_errors(envelope.to_dict(), envelope=True, schema=schema)
        if reason:
            return self.reject(f"invalid event: {reason}")
        return Sealable(
            self.record.offset,
            envelope,
            received_micros(envelope.received_at),
            self.idempotency_key,
            self.config_id,
        )


def _decode_json(value: bytes, schema: Schema, context: _Context) -> Sealable | Rejected:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return context.reject(f"value is not JSON: {exc}")
    if not isinstance(obj, dict):
        return context.reject("value is not a JSON object")
    try:
        if "event" in obj and "received_at" in obj:
            reason = _schema_errors(obj, envelope=True, schema=schema)
            if reason:
                return context.reject(f"invalid event: {reason}")
            return context.seal(Envelope.from_bytes(value), schema)
        reason = _schema_errors(obj, envelope=False, schema=schema)
        if reason:
            return context.reject(f"invalid event: {reason}")
        received = datetime.fromtimestamp(context.record.timestamp / 1000, UTC)
        envelope = Envelope(event=obj, received_at=format_received_at(received))
        return Sealable(
            context.record.offset,
            envelope,
            received_micros(envelope.received_at),
            context.idempotency_key,
            context.config_id,
        )
    except InvalidEvent as exc:
        return context.reject(f"invalid envelope: {exc}")
