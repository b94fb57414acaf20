"""Turning Kafka records into sealable envelopes, or into dead letters with a reason.

Two shapes are accepted on the events topic (documented in docs/kafka-messages.md):

* a canonical envelope (what ingest and the producer library send): stored byte for byte;
* a plain event object from any Kafka client: wrapped into an envelope whose ``received_at`` is
  the record's timestamp, then canonicalized.

Anything else becomes a :class:`Rejected`, which the sealer sends to the dead-letter topic: its
``reason`` is one of the codes below (the ``dlq-reason`` header), its ``detail`` says what
exactly (``dlq-detail``). :func:`decode` never raises, whatever the record holds: one hostile
record must not stop the sealer, or, restarted at the same offset, every sealer after it
(tests/unit/test_records_fuzz.py throws every shape of input at it).

A received time is only accepted within a window around the sealer's clock (:class:`Window`,
``AUDITLOG_SEALER_MAX_PAST`` and ``AUDITLOG_SEALER_MAX_FUTURE``): each month a record is dated in
gets its own partitions, so a record dated in the year 1 or 9999 would make the sealer create
tables for it, and the last month of year 9999 has no month after it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple, Protocol

import orjson

from auditlog.core.columns import TEXT_COLUMNS
from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.errors import InvalidEvent, NonCanonicalEnvelope
from auditlog.core.schema import (
    NO_CUSTOM_SCHEMAS,
    Schema,
    Schemas,
    validate_event,
    validate_signature_fields,
)
from auditlog.kafka.clients import IDEMPOTENCY_KEY_HEADER, KAFKA_PRINCIPAL, PRINCIPAL_HEADER
from sealer.timestamps import EPOCH, micros, received_micros

MAX_RECORD_BYTES = 1024 * 1024
CANONICAL_PREFIX = b'{"event":'
_BACKSLASH: Final = 0x5C

# Dead-letter reasons, the ``dlq-reason`` header: stable codes to alert on and replay by.
EMPTY_VALUE: Final = "empty-value"  # no value (a tombstone) or an empty one
TOO_LARGE: Final = "too-large"  # more than MAX_RECORD_BYTES
INVALID_HEADER: Final = "invalid-header"  # idempotency-key, principal, config-id not storable
UNKNOWN_CONFIG_ID: Final = "unknown-config-id"  # no custom schema of that config-id
NOT_JSON: Final = "not-json"  # not UTF-8 JSON (orjson's rules: nesting depth, number range)
NOT_OBJECT: Final = "not-object"  # JSON, but an array, string, number, boolean or null
NON_CANONICAL: Final = "non-canonical-envelope"  # an envelope spelled otherwise than canonically
INVALID_ENVELOPE: Final = "invalid-envelope"  # envelope keys, received_at, signature fields
INVALID_EVENT: Final = "invalid-event"  # the event breaks its schema
OUT_OF_WINDOW: Final = "received-at-out-of-window"  # dated outside the sealer's window
UNSTORABLE: Final = "unstorable-value"  # a value PostgreSQL cannot store or index (U+0000, ...)
# Given by the sealer's worker, not by decode(): a record aiokafka could not parse at all, and a
# record whose handling raised something no rule here foresaw (a bug: its traceback is logged).
UNREADABLE: Final = "unreadable-record"
SEALER_ERROR: Final = "sealer-error"
# Given by the seal (sealer/claims.py): the record's idempotency key sealed another event.
IDEMPOTENCY_CONFLICT: Final = "idempotency-conflict"
REASONS: Final = (
    EMPTY_VALUE, TOO_LARGE, INVALID_HEADER, UNKNOWN_CONFIG_ID, NOT_JSON, NOT_OBJECT,
    NON_CANONICAL, INVALID_ENVELOPE, INVALID_EVENT, OUT_OF_WINDOW, UNSTORABLE, UNREADABLE,
    SEALER_ERROR, IDEMPOTENCY_CONFLICT,
)  # fmt: skip

IDEMPOTENCY_KEY: Final = IDEMPOTENCY_KEY_HEADER
PRINCIPAL: Final = PRINCIPAL_HEADER  # who produced the record: the namespace of its key
CONFIG_ID: Final = "config-id"
# A btree entry holds at most ~2700 bytes: idempotency_keys is keyed by (principal, tenant,
# key), and events has an index on (tenant_id, received_at). Beyond these, a seal could never
# commit.
MAX_IDEMPOTENCY_KEY_BYTES: Final = 1024
MAX_PRINCIPAL_BYTES: Final = 256
MAX_CONFIG_ID_BYTES: Final = 256
MAX_TENANT_BYTES: Final = 1024

# The received times a window may reach: what a datetime (and a received_at) can spell.
UNIX_2000_US: Final = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since 1970
FIRST_US: Final = micros(datetime(1, 1, 1, tzinfo=UTC))
LAST_US: Final = micros(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
DEFAULT_MAX_PAST: Final = 10 * 365.25 * 86_400.0  # seconds: ten years
DEFAULT_MAX_FUTURE: Final = 86_400.0  # seconds: a day


@dataclass(frozen=True, slots=True)
class Window:
    """The received times the sealer accepts, in microseconds since 2000 (sealer/timestamps.py),
    both ends included."""

    earliest: int
    latest: int

    @classmethod
    def around(
        cls,
        now: float,
        max_past: float = DEFAULT_MAX_PAST,
        max_future: float = DEFAULT_MAX_FUTURE,
    ) -> Window:
        """From ``max_past`` seconds before ``now`` (seconds since 1970) to ``max_future`` after,
        within what a ``received_at`` can spell."""
        now_us = round(now * 1_000_000) - UNIX_2000_US
        return cls(
            min(LAST_US, max(FIRST_US, now_us - round(max_past * 1_000_000))),
            max(FIRST_US, min(LAST_US, now_us + round(max_future * 1_000_000))),
        )

    def __contains__(self, received_us: object) -> bool:
        return type(received_us) is int and self.earliest <= received_us <= self.latest

    def describe(self) -> str:
        return f"{_spelled(self.earliest)} to {_spelled(self.latest)}"


def _spelled(received_us: int) -> str:
    return format_received_at(EPOCH + timedelta(microseconds=received_us))


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
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


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
    # Who produced it (the ``principal`` header; ``kafka`` without one): its key's namespace.
    principal: str = KAFKA_PRINCIPAL
    # Its row, entry and leaf hash, worked out by the fetch loop while the batch fills
    # (sealer/rows.py); a seal makes them itself when this is None.
    prepared: Prepared | None = None


@dataclass(slots=True)
class Rejected:
    offset: int
    reason: str  # one of REASONS
    record: Record
    detail: str = ""  # what exactly, for people: the dlq-detail header and the log


class _BadHeader(Exception):  # noqa: N818 - a verdict, caught in decode()
    pass


def _header(headers: Sequence[tuple[str, bytes | None]], name: str, limit: int) -> str | None:
    """The first header ``name`` as text; _BadHeader when it is not text PostgreSQL can store."""
    for key, value in headers:
        if key != name:
            continue
        if type(value) is not bytes:
            raise _BadHeader(f"header {name} has no value")
        if len(value) > limit:
            raise _BadHeader(f"header {name} is {len(value)} bytes, the limit is {limit}")
        try:
            text = value.decode("utf-8")  # strictly: a lossy key could match another's
        except UnicodeDecodeError as exc:
            raise _BadHeader(
                f"header {name} is not UTF-8: {exc.reason} at byte {exc.start}"
            ) from None
        if "\x00" in text:
            raise _BadHeader(f"header {name} contains U+0000, which PostgreSQL text cannot hold")
        return text
    return None


def _read_headers(
    headers: Sequence[tuple[str, bytes | None]],
) -> tuple[str | None, str | None, str]:
    """The idempotency key, config id and principal a record's headers name."""
    principal = _header(headers, PRINCIPAL, MAX_PRINCIPAL_BYTES)
    if principal == "":  # '' is the principal of the keys claimed before principals existed
        raise _BadHeader(f"header {PRINCIPAL} is empty")
    return (
        _header(headers, IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY_BYTES),
        _header(headers, CONFIG_ID, MAX_CONFIG_ID_BYTES),
        principal or KAFKA_PRINCIPAL,
    )


def _schema_errors(obj: Mapping[str, object], envelope: bool, schema: Schema) -> str | None:
    errors = validate_event(obj.get("event") if envelope else obj, "/event", schema)
    if envelope:
        errors += validate_signature_fields(obj, "")
    if errors:
        return "; ".join(f"{e['source']}: {e['detail']}" for e in errors[:5])
    return None


def _unstorable(event: Mapping[str, object]) -> str | None:
    """Why PostgreSQL would refuse the event's searchable columns (every seal of its batch would
    fail, and be retried forever), or None."""
    for _, name in TEXT_COLUMNS:
        value = event.get(name)
        if isinstance(value, str) and "\x00" in value:
            return f"'/event/{name}' contains U+0000, which a PostgreSQL text column cannot hold"
    tenant = event.get("tenant_id")
    if isinstance(tenant, str) and len(tenant.encode("utf-8", "surrogatepass")) > MAX_TENANT_BYTES:
        return f"'/event/tenant_id' is longer than the {MAX_TENANT_BYTES} bytes its index holds"
    return None


def decode(
    record: Record, schemas: Schemas = NO_CUSTOM_SCHEMAS, window: Window | None = None
) -> Sealable | Rejected:
    """``record`` as a sealable envelope or a dead letter; never raises.

    ``window``: the received times accepted (by default ten years back to a day ahead of now).
    """
    value = record.value
    if not value:
        return Rejected(record.offset, EMPTY_VALUE, record, "the record has no value")
    if len(value) > MAX_RECORD_BYTES:
        return Rejected(
            record.offset,
            TOO_LARGE,
            record,
            f"the value is {len(value)} bytes, the limit is {MAX_RECORD_BYTES}",
        )
    if window is None:
        window = Window.around(time.time())
    headers = record.headers
    idempotency_key = config_id = None
    principal = KAFKA_PRINCIPAL
    if headers:
        try:
            idempotency_key, config_id, principal = _read_headers(headers)
        except _BadHeader as exc:
            return Rejected(record.offset, INVALID_HEADER, record, str(exc))
    schema = schemas.for_config(config_id)
    if schema is None:
        return Rejected(
            record.offset, UNKNOWN_CONFIG_ID, record, f"no audit schema for config-id {config_id!r}"
        )
    if value.startswith(CANONICAL_PREFIX):
        # The hot path: ingest and the producer library send canonical envelopes, whose
        # sorted keys always start with "event". Parsed once, by the strict constructor.
        try:
            envelope = Envelope.from_bytes(value)
        except NonCanonicalEnvelope as exc:
            return Rejected(record.offset, NON_CANONICAL, record, str(exc))
        except InvalidEvent:
            pass  # not an envelope after all: judged below as what it claims to be
        else:
            event = envelope.event
            if schema.valid(event) and envelope.signature is None and envelope.public_key is None:
                # The envelope checked its received_at's spelling already.
                received_us = received_micros(envelope.received_at)
                tenant = event.get("tenant_id")
                if (
                    window.earliest <= received_us <= window.latest
                    # How canonical JSON spells U+0000; most values hold no backslash at all,
                    # and a byte is found far faster than a string.
                    and (_BACKSLASH not in value or b"\\u0000" not in value)
                    and (type(tenant) is not str or len(tenant) <= MAX_TENANT_BYTES // 4)
                ):
                    return Sealable(
                        record.offset, envelope, received_us, idempotency_key, config_id, principal
                    )
            context = _Context(record, idempotency_key, config_id, principal, window)
            return context.seal(envelope, schema)
    context = _Context(record, idempotency_key, config_id, principal, window)
    return _decode_json(value, schema, context)


@dataclass(frozen=True, slots=True)
class _Context:
    record: Record
    idempotency_key: str | None
    config_id: str | None
    principal: str
    window: Window

    def reject(self, reason: str, detail: str) -> Rejected:
        return Rejected(self.record.offset, reason, self.record, detail)

    def seal(self, envelope: Envelope, schema: Schema) -> Sealable | Rejected:
        """An envelope, checked in full."""
        reason = _schema_errors(envelope.to_dict(), envelope=True, schema=schema)
        if reason:
            return self.reject(INVALID_EVENT, reason)
        received_us = received_micros(envelope.received_at)
        if received_us not in self.window:
            return self.reject(
                OUT_OF_WINDOW,
                f"received_at {envelope.received_at} is outside the sealer's window,"
                f" {self.window.describe()}",
            )
        return self.accept(envelope, received_us)

    def plain(self, event: dict[str, object]) -> Sealable | Rejected:
        """A plain event, received when the record's timestamp says."""
        timestamp = self.record.timestamp
        received_us = timestamp * 1000 - UNIX_2000_US  # exact, where a float would round
        if received_us not in self.window:
            return self.reject(
                OUT_OF_WINDOW,
                f"the record's timestamp {timestamp} (ms since 1970) is outside the sealer's"
                f" window, {self.window.describe()}",
            )
        try:
            envelope = Envelope(event=event, received_at=_spelled(received_us))
        except InvalidEvent as exc:
            return self.reject(INVALID_EVENT, str(exc))
        return self.accept(envelope, received_us)

    def accept(self, envelope: Envelope, received_us: int) -> Sealable | Rejected:
        problem = _unstorable(envelope.event)
        if problem:
            return self.reject(UNSTORABLE, problem)
        return Sealable(
            self.record.offset,
            envelope,
            received_us,
            self.idempotency_key,
            self.config_id,
            self.principal,
        )


_JSON_TYPES: Final = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _decode_json(value: bytes, schema: Schema, context: _Context) -> Sealable | Rejected:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return context.reject(NOT_JSON, str(exc))
    if not isinstance(obj, dict):
        kind = _JSON_TYPES.get(type(obj), "null")
        return context.reject(NOT_OBJECT, f"the value is {kind}, not a JSON object")
    if "event" in obj and "received_at" in obj:
        reason = _schema_errors(obj, envelope=True, schema=schema)
        if reason:
            return context.reject(INVALID_EVENT, reason)
        try:
            envelope = Envelope.from_bytes(value)
        except NonCanonicalEnvelope as exc:
            return context.reject(NON_CANONICAL, str(exc))
        except InvalidEvent as exc:
            return context.reject(INVALID_ENVELOPE, str(exc))
        return context.seal(envelope, schema)
    reason = _schema_errors(obj, envelope=False, schema=schema)
    if reason:
        return context.reject(INVALID_EVENT, reason)
    return context.plain(obj)
