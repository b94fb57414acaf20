"""Fuzzing the sealer's record path: whatever a record holds, it is sealable or a dead letter.

The fetch loop judges each record with ``Sealer._judge`` (sealer/worker.py): ``decode`` (sealer/
records.py), then, for a sealable record, ``prepare`` (its events row, entry and leaf hash,
sealer/rows.py). ``_judge`` turns anything those two raise into a ``sealer-error`` dead letter, a
last resort that keeps the sealer alive; here no record may ever reach it. Each record that
passes is then taken where its seal takes it: the ``timestamptz`` codec of its times
(sealer/timestamps.py), the month its row goes to, and that month's partition bounds and names
(sealer/partitions.py), which once raised for December 9999 and stopped every sealer.

Inputs: random bytes; JSON of every shape, depth and number (NaN, infinities, integers past 64
bits); envelopes canonical, almost canonical and not, dated at every boundary (years 0 to
10000, month 13, February 30, the leap second 23:59:60, zones, 0 to 9 fraction digits); Kafka
timestamps from -2**63 to 2**63-1; headers of any name and bytes, or none.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditlog.core.envelope import format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from auditlog.core.schema import NO_CUSTOM_SCHEMAS, Schemas, parse_schemas
from sealer import timestamps, worker
from sealer.deadletters import dead_letter_headers
from sealer.partitions import month_bounds, partition_name
from sealer.records import (
    FIRST_US,
    IDEMPOTENCY_CONFLICT,
    LAST_US,
    MAX_TENANT_BYTES,
    REASONS,
    SEALER_ERROR,
    UNREADABLE,
    Rejected,
    Sealable,
    Window,
    decode,
)
from sealer.rows import prepare
from sealer.settings import Settings
from sealer.timestamps import month
from sealer.worker import Sealer

TP = TopicPartition("audit.fuzz", 0)
NOW = time.time()  # the sealers' clock stands still here
SCHEMES = ("rfc6962-sha256", "rfc6962-blake3", "pangea-sha256")
EVERYTHING = Window(FIRST_US, LAST_US)
CUSTOM = parse_schemas(
    {
        "c": {
            "fields": [
                {"id": "message", "required": True},
                {"id": "amount", "type": "integer"},
                {"id": "flag", "type": "boolean"},
                {"id": "when", "type": "datetime"},
                {"id": "note", "type": "text"},
                {"id": "tenant_id", "type": "text", "size": 4000},
                {"id": "timestamp", "type": "string", "size": 200},
            ]
        }
    }
)
DECODE_REASONS = set(REASONS) - {UNREADABLE, SEALER_ERROR, IDEMPOTENCY_CONFLICT}


@dataclass
class FakeRecord:
    value: bytes | None
    offset: int = 0
    timestamp: int = 0
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = field(default_factory=tuple)


# -- dates ---------------------------------------------------------------------------------
_years = st.sampled_from([0, 1, 2, 999, 1969, 1970, 1999, 2000, 2016, 2026, 9998, 9999, 10000])
_zones = st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+01:00", "-23:59", "+24:00", "+0530"])


@st.composite
def date_strings(draw: st.DrawFn) -> str:
    """Spellings of dates and times, valid or one field off, at the edges of every field."""
    year = draw(_years | st.integers(0, 10000))
    month_, day = draw(st.integers(0, 13)), draw(st.sampled_from([0, 1, 28, 29, 30, 31, 32]))
    hour, minute = draw(st.sampled_from([0, 1, 23, 24])), draw(st.sampled_from([0, 59, 60]))
    second = draw(st.sampled_from([0, 1, 59, 60, 61]))  # 60: a leap second
    fraction = draw(st.sampled_from(["", "."]) | st.text("0123456789", min_size=1, max_size=9))
    if fraction and fraction != ".":
        fraction = "." + fraction
    sep = draw(st.sampled_from(["T", "t", " "]))
    return (
        f"{year:04d}-{month_:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{fraction}"
        + (draw(_zones))
    )


received_ats = st.one_of(
    date_strings(),
    st.datetimes().map(format_received_at),  # valid, years 1 to 9999
    st.sampled_from(
        [
            "9999-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00.000000Z",
            "2016-12-31T23:59:60.000000Z",
            format_received_at(datetime.now()),
        ]
    ),
    st.text(max_size=30),
)

# -- JSON ----------------------------------------------------------------------------------
_strings = st.text(max_size=20) | st.sampled_from(["", "\x00", "a\x00b", "\ud800", "é" * 300])
_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
    | st.floats()  # NaN and the infinities included
    | _strings
)
json_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_strings, inner, max_size=4),
    max_leaves=15,
)
events = st.fixed_dictionaries(
    {"message": _strings},
    optional={
        "actor": _strings,
        "tenant_id": _strings | st.text(min_size=200, max_size=1200),
        "timestamp": date_strings() | _strings,
        "action": _strings,
        "amount": json_values,
        "when": date_strings(),
        "note": _strings,
        "flag": json_values,
        "extra": json_values,
    },
) | st.dictionaries(_strings, json_values, max_size=4)


def _dumps(obj: object, *, canonical: bool) -> bytes:
    if canonical:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(obj)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate makes invalid UTF-8


@st.composite
def values(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["envelope", "plain", "json", "bytes", "deep", "mutated", "none"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.sampled_from([b"", b'{"event":', b'{"'])) + draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(0, 3000))
        opener = draw(st.sampled_from(["[", '{"a":', '{"event":']))
        closer = "]" if opener == "[" else "}"
        return (opener * depth + "1" + closer * depth).encode()
    if kind == "json":
        return _dumps(draw(json_values), canonical=draw(st.booleans()))
    if kind == "plain":
        return _dumps(draw(events), canonical=draw(st.booleans()))
    envelope: dict[str, object] = {
        "event": draw(events | json_values),
        "received_at": draw(received_ats),
    }
    if draw(st.booleans()):
        envelope["signature"] = draw(_strings | json_values)
        envelope["public_key"] = draw(_strings | json_values)
    raw = _dumps(envelope, canonical=draw(st.booleans()) or kind == "mutated")
    if kind == "mutated" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    return raw


_header_names = st.sampled_from(["idempotency-key", "config-id", "trace"]) | st.text(max_size=8)
_header_values = (
    st.none()
    | st.binary(max_size=40)
    | st.sampled_from([b"c", b"k1", b"\xff", b"a\x00b", b"k" * 1500, "é".encode()])
)
records = st.builds(
    FakeRecord,
    value=values(),
    offset=st.integers(0, 2**63 - 1),
    timestamp=st.integers(-(2**63), 2**63 - 1)
    | st.sampled_from(
        [-1, 0, 253_402_300_799_999, 253_402_300_800_000, -62_135_596_800_000, int(NOW * 1000)]
    ),
    key=st.none() | st.binary(max_size=10),
    headers=st.lists(st.tuples(_header_names, _header_values), max_size=4).map(tuple),
)


def _sealer(schemas: Schemas, *, everything: bool) -> Sealer:
    """A sealer whose clock stands still at NOW, with the default window or one spanning all
    that a received_at can spell. Only its record path is used: no consumer, producer or pool."""
    reach = 1e13 if everything else None  # seconds: past either end of the years 1 to 9999
    settings_ = Settings() if reach is None else Settings(max_past=reach, max_future=reach)
    return Sealer(
        settings_,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        get_hasher("rfc6962-sha256"),
        NoteSigner.generate("fuzz.test"),
        schemas=schemas,
        wall_clock=lambda: NOW,
    )


SEALERS = [
    _sealer(schemas, everything=everything)
    for schemas in (NO_CUSTOM_SCHEMAS, CUSTOM)
    for everything in (False, True)
]


def _check_sealable(item: Sealable, window: Window) -> None:
    """What the seal does with a sealable record, none of which may raise."""
    assert window.earliest <= item.received_us <= window.latest
    for scheme in SCHEMES:
        row = prepare(item, get_hasher(scheme)).tail
        for value in row:
            if isinstance(value, datetime | int) and not isinstance(value, bool):
                timestamps.encode(value)  # the timestamptz codec (ints pass through)
            if isinstance(value, str):
                assert "\x00" not in value  # PostgreSQL text holds no NUL
                value.encode("utf-8")  # nor lone surrogates
    tenant = item.envelope.event.get("tenant_id")
    if isinstance(tenant, str):
        assert len(tenant.encode()) <= MAX_TENANT_BYTES
    year, mon = month(item.received_us)
    month_bounds(year, mon)
    month_bounds(year + mon // 12, mon % 12 + 1)  # the month ahead, made in advance
    partition_name(year, mon, "audit.fuzz-0")


def _check(record: FakeRecord, sealer: Sealer) -> None:
    (item,) = sealer._judge([record])  # type: ignore[list-item]
    if isinstance(item, Rejected):
        assert item.reason != SEALER_ERROR, item.detail  # decode or prepare raised
        assert item.reason in DECODE_REASONS
        assert item.record is record and item.offset == record.offset
        for _, value in dead_letter_headers(TP, item):
            assert value is None or isinstance(value, bytes)
        return
    assert isinstance(item, Sealable)
    assert item.prepared is not None
    settings_ = sealer.settings
    window = Window.around(sealer.wall_clock(), settings_.max_past, settings_.max_future)
    _check_sealable(item, window)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=records, which=st.integers(0, len(SEALERS) - 1))
def test_every_record_is_sealable_or_a_dead_letter_never_an_exception(
    record: FakeRecord, which: int
) -> None:
    _check(record, SEALERS[which])


@settings(max_examples=300, deadline=None)
@given(
    timestamp=st.integers(-(2**63), 2**63 - 1),
    event=events,
    which=st.integers(0, len(SEALERS) - 1),
)
def test_plain_events_at_any_kafka_timestamp(
    timestamp: int, event: dict[str, object], which: int
) -> None:
    _check(FakeRecord(_dumps(event, canonical=False), timestamp=timestamp), SEALERS[which])


@settings(max_examples=300, deadline=None)
@given(received_at=received_ats, event=events, which=st.integers(0, len(SEALERS) - 1))
def test_canonical_envelopes_dated_anywhere(
    received_at: str, event: dict[str, object], which: int
) -> None:
    value = _dumps({"event": event, "received_at": received_at}, canonical=True)
    _check(FakeRecord(value), SEALERS[which])


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(st.tuples(_header_names, _header_values), max_size=4).map(tuple),
    which=st.integers(0, len(SEALERS) - 1),
)
def test_headers_of_any_bytes_on_a_good_record(
    headers: tuple[tuple[str, bytes | None], ...], which: int
) -> None:
    now = format_received_at(datetime.fromtimestamp(NOW, UTC))
    value = _dumps({"event": {"message": "m"}, "received_at": now}, canonical=True)
    _check(FakeRecord(value, headers=headers), SEALERS[which])


@settings(max_examples=200, deadline=None)
@given(received_us=st.integers(FIRST_US, LAST_US))
def test_every_datable_instant_has_a_month_and_its_partitions(received_us: int) -> None:
    # Whatever passes decode is within [FIRST_US, LAST_US]: each such instant is placed.
    item = decode(
        FakeRecord(b'{"message":"m"}', timestamp=(received_us + 946_684_800_000_000) // 1000),
        window=EVERYTHING,
    )
    assert isinstance(item, Sealable), item
    _check_sealable(item, EVERYTHING)


def test_the_last_resort_is_reachable_and_names_the_error() -> None:
    # The guard the fuzz tests must never reach does work: prepare() raising on purpose.
    sealer = SEALERS[0]
    hasher = sealer.hasher
    sealer.hasher = None  # type: ignore[assignment]
    try:
        (item,) = sealer._judge([FakeRecord(b'{"message":"m"}', timestamp=int(NOW * 1000))])
    finally:
        sealer.hasher = hasher
    assert isinstance(item, Rejected)
    assert item.reason == SEALER_ERROR
    assert "AttributeError" in item.detail


def test_one_record_that_raises_is_the_only_dead_letter_of_its_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = worker.prepare

    def prepare_failing_on_one(item: Sealable, hasher: object) -> object:
        if item.offset == 1:
            raise RuntimeError("a bug")
        return real(item, hasher)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "prepare", prepare_failing_on_one)
    plain = b'{"message":"m"}'
    records = [FakeRecord(plain, offset=i, timestamp=int(NOW * 1000)) for i in range(3)]
    items = SEALERS[0]._judge(records)  # type: ignore[arg-type]
    assert [type(item).__name__ for item in items] == ["Sealable", "Rejected", "Sealable"]
    assert items[1].reason == SEALER_ERROR  # type: ignore[union-attr]
    assert all(item.prepared is not None for item in items if isinstance(item, Sealable))
