"""Turning Kafka records into sealable envelopes, or into dead letters with a reason.

Two shapes are accepted on the events topic (documented in docs/kafka-messages.md):

* a canonical envelope (what ingest and the producer library send): stored byte for byte;
* a plain event object from any Kafka client: wrapped into an envelope whose ``received_at`` is
  the record's timestamp, then canonicalized.

Anything else (not JSON, not an object, a non-canonical envelope, a schema violation, too large)
becomes a :class:`Rejected` with the reason, which the sealer sends to the dead-letter topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson

from auditlog.envelope import Envelope, format_received_at, parse_received_at
from auditlog.errors import InvalidEvent, NonCanonicalEnvelope
from auditlog.schema import validate_event, validate_signature_fields

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


@dataclass(frozen=True, slots=True)
class Sealable:
    offset: int
    envelope: Envelope
    received_at: datetime
    idempotency_key: str | None
    config_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    offset: int
    reason: str
    record: Record


def _header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def _schema_errors(obj: dict[str, object], envelope: bool) -> str | None:
    errors = validate_event(obj.get("event") if envelope else obj, "/event")
    if envelope:
        errors += validate_signature_fields(obj, "")
    if errors:
        return "; ".join(f"{e['source']}: {e['detail']}" for e in errors[:5])
    return None


def decode(record: Record) -> Sealable | Rejected:
    value = record.value
    if not value:
        return Rejected(record.offset, "empty record value", record)
    if len(value) > MAX_RECORD_BYTES:
        return Rejected(
            record.offset, f"record is {len(value)} bytes, limit {MAX_RECORD_BYTES}", record
        )
    idem = _header(record, "idempotency-key")
    config_id = _header(record, "config-id")
    try:
        if value.startswith(CANONICAL_PREFIX):
            # The hot path: ingest and the producer library send canonical envelopes, whose
            # sorted keys always start with "event". Parsed once, by the strict constructor.
            envelope = Envelope.from_bytes(value)
            reason = _schema_errors(envelope.to_dict(), envelope=True)
            if reason:
                return Rejected(record.offset, f"invalid event: {reason}", record)
            received = parse_received_at(envelope.received_at)
            return Sealable(record.offset, envelope, received, idem, config_id)
    except NonCanonicalEnvelope as exc:
        return Rejected(record.offset, f"invalid envelope: {exc}", record)
    except InvalidEvent:
        pass  # not an envelope after all: judged below as what it claims to be
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejected(record.offset, f"value is not JSON: {exc}", record)
    if not isinstance(obj, dict):
        return Rejected(record.offset, "value is not a JSON object", record)
    try:
        if "event" in obj and "received_at" in obj:
            reason = _schema_errors(obj, envelope=True)
            if reason:
                return Rejected(record.offset, f"invalid event: {reason}", record)
            envelope = Envelope.from_bytes(value)
            received = parse_received_at(envelope.received_at)
            return Sealable(record.offset, envelope, received, idem, config_id)
        reason = _schema_errors(obj, envelope=False)
        if reason:
            return Rejected(record.offset, f"invalid event: {reason}", record)
        received = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        envelope = Envelope(event=obj, received_at=format_received_at(received))
        return Sealable(record.offset, envelope, received, idem, config_id)
    except InvalidEvent as exc:
        return Rejected(record.offset, f"invalid envelope: {exc}", record)
