"""Hostile records, one rule each: every one is a dead letter with its reason, or sealable and
storable, never an exception (the fuzz test, test_records_fuzz.py, throws everything at once).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from auditlog.core.columns import event_time
from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.schema import parse_schemas
from auditlog.runtime.settings import SettingsError
from sealer import timestamps
from sealer.partitions import month_bounds, partition_name
from sealer.records import (
    DEFAULT_MAX_FUTURE,
    DEFAULT_MAX_PAST,
    FIRST_US,
    INVALID_HEADER,
    LAST_US,
    MAX_IDEMPOTENCY_KEY_BYTES,
    OUT_OF_WINDOW,
    UNSTORABLE,
    Rejected,
    Sealable,
    Window,
    decode,
)
from sealer.rows import prepare
from sealer.settings import Settings
from sealer.timestamps import micros, month

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
WINDOW = Window.around(NOW.timestamp())
EVERYTHING = Window(FIRST_US, LAST_US)


@dataclass
class FakeRecord:
    value: bytes | None
    offset: int = 3
    timestamp: int = int(NOW.timestamp() * 1000)
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = field(default_factory=tuple)


def _envelope(received: datetime | str, **event: str) -> bytes:
    at = received if isinstance(received, str) else format_received_at(received)
    return Envelope(event={"message": "m", **event}, received_at=at).canonical


def _plain(**event: object) -> bytes:
    return json.dumps({"message": "m", **event}).encode()


# -- the window around the sealer's clock --------------------------------------------------
@pytest.mark.parametrize(
    "received",
    [
        "9999-12-31T23:59:59.999999Z",  # once: datetime(10000, 1, 1) in the partition code
        "0001-01-01T00:00:00.000000Z",
        NOW + timedelta(seconds=DEFAULT_MAX_FUTURE + 1),
        NOW - timedelta(seconds=DEFAULT_MAX_PAST + 1),
    ],
)
def test_an_envelope_dated_outside_the_window_is_a_dead_letter(received: datetime | str) -> None:
    out = decode(FakeRecord(_envelope(received)), window=WINDOW)
    assert isinstance(out, Rejected)
    assert out.reason == OUT_OF_WINDOW
    assert "window" in out.detail


@pytest.mark.parametrize(
    "received",
    [
        NOW,
        NOW + timedelta(seconds=DEFAULT_MAX_FUTURE - 1),
        NOW - timedelta(seconds=DEFAULT_MAX_PAST - 1),  # a producer replaying old events
    ],
)
def test_an_envelope_dated_inside_the_window_is_sealed(received: datetime) -> None:
    out = decode(FakeRecord(_envelope(received)), window=WINDOW)
    assert isinstance(out, Sealable)
    assert out.received_us == micros(received)


@pytest.mark.parametrize("timestamp", [-(2**63), -1, 0, 2**63 - 1, 253_402_300_800_000])
def test_a_plain_event_with_an_absurd_kafka_timestamp_is_a_dead_letter(timestamp: int) -> None:
    out = decode(FakeRecord(_plain(), timestamp=timestamp), window=WINDOW)
    assert isinstance(out, Rejected)
    assert out.reason == OUT_OF_WINDOW
    assert str(timestamp) in out.detail
    # Even with no window at all, what no datetime can hold is out.
    if not -62_135_596_800_000 <= timestamp < 253_402_300_800_000:
        assert decode(FakeRecord(_plain(), timestamp=timestamp), window=EVERYTHING).reason == (  # type: ignore[union-attr]
            OUT_OF_WINDOW
        )


def test_kafka_timestamps_at_the_ends_of_time_are_exact_to_the_millisecond() -> None:
    last = decode(FakeRecord(_plain(), timestamp=253_402_300_799_999), window=EVERYTHING)
    assert isinstance(last, Sealable)
    assert last.envelope.received_at == "9999-12-31T23:59:59.999000Z"
    first = decode(FakeRecord(_plain(), timestamp=-62_135_596_800_000), window=EVERYTHING)
    assert isinstance(first, Sealable)
    assert first.envelope.received_at == "0001-01-01T00:00:00.000000Z"
    for item in (first, last):
        year, mon = month(item.received_us)
        start, end = month_bounds(year, mon)
        assert partition_name(year, mon).startswith("events_")
        assert start < end or len(end) > len(start)


def test_the_window_follows_the_clock_and_stays_within_what_a_date_can_spell() -> None:
    window = Window.around(time.time())
    assert micros(datetime.now(UTC)) in window
    huge = Window.around(time.time(), max_past=1e15, max_future=1e15)
    assert (huge.earliest, huge.latest) == (FIRST_US, LAST_US)
    assert "0001-01-01" in huge.describe() and "9999-12-31" in huge.describe()


def test_december_9999_has_a_partition_that_ends_in_the_year_10000() -> None:
    assert month_bounds(9999, 12) == ("9999-12-01 00:00:00+00", "10000-01-01 00:00:00+00")
    assert month_bounds(1, 1) == ("0001-01-01 00:00:00+00", "0001-02-01 00:00:00+00")
    assert month_bounds(2026, 2) == ("2026-02-01 00:00:00+00", "2026-03-01 00:00:00+00")
    assert partition_name(10000, 1) == "events_10000_01"


# -- headers -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        ("idempotency-key", b"k\xff"),  # not UTF-8: "replace" would make two keys one
        ("idempotency-key", b"\xed\xa0\x80"),  # an encoded surrogate
        ("idempotency-key", b"a\x00b"),  # PostgreSQL text holds no NUL: every seal would fail
        ("idempotency-key", None),
        ("idempotency-key", b"k" * (MAX_IDEMPOTENCY_KEY_BYTES + 1)),  # past a btree entry
        ("config-id", b"\xc3("),
        ("config-id", b"pci\x00"),
    ],
)
def test_a_header_the_database_cannot_store_is_a_dead_letter(
    header: tuple[str, bytes | None],
) -> None:
    out = decode(FakeRecord(_envelope(NOW), headers=(header,)), window=WINDOW)
    assert isinstance(out, Rejected)
    assert out.reason == INVALID_HEADER
    assert header[0] in out.detail


def test_storable_headers_pass_and_other_headers_do_not_matter() -> None:
    headers = (
        ("trace", b"\xff\xfe"),
        ("idempotency-key", "clé-✓".encode()),
        ("idempotency-key", b"\xff"),  # only the first one counts, as before
    )
    out = decode(FakeRecord(_envelope(NOW), headers=headers), window=WINDOW)
    assert isinstance(out, Sealable)
    assert out.idempotency_key == "clé-✓"


# -- values PostgreSQL would refuse --------------------------------------------------------
@pytest.mark.parametrize("value", [_envelope(NOW, actor="a\x00b"), _plain(message="a\x00b")])
def test_a_nul_in_a_searchable_field_is_a_dead_letter(value: bytes) -> None:
    out = decode(FakeRecord(value), window=WINDOW)
    assert isinstance(out, Rejected)
    assert out.reason == UNSTORABLE
    assert "U+0000" in out.detail


def test_a_nul_elsewhere_is_sealed_byte_for_byte() -> None:
    schemas = parse_schemas(
        {"c": {"fields": [{"id": "message", "required": True}, {"id": "note", "type": "text"}]}}
    )
    value = Envelope(
        event={"message": "m\\u0000 spelled out", "note": "a\x00b"},
        received_at="2026-12-04T00:00:00.000000Z",
    ).canonical
    out = decode(FakeRecord(value, headers=(("config-id", b"c"),)), schemas, WINDOW)
    assert isinstance(out, Sealable)
    assert out.envelope.canonical == value


def test_a_tenant_too_long_for_its_index_is_a_dead_letter() -> None:
    schemas = parse_schemas(
        {"c": {"fields": [{"id": "message"}, {"id": "tenant_id", "type": "text"}]}}
    )
    long = Envelope(
        event={"message": "m", "tenant_id": "é" * 600}, received_at="2026-12-04T00:00:00.000000Z"
    )
    out = decode(FakeRecord(long.canonical, headers=(("config-id", b"c"),)), schemas, WINDOW)
    assert isinstance(out, Rejected)
    assert out.reason == UNSTORABLE
    short = Envelope(
        event={"message": "m", "tenant_id": "é" * 200}, received_at="2026-12-04T00:00:00.000000Z"
    )
    assert isinstance(
        decode(FakeRecord(short.canonical, headers=(("config-id", b"c"),)), schemas, WINDOW),
        Sealable,
    )


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01 00:30+00:31"],
)
def test_an_event_timestamp_beyond_the_years_1_to_9999_in_utc_is_not_searchable(
    stamp: str,
) -> None:
    # It was once sent to PostgreSQL as it was: the codec's astimezone(UTC) overflowed
    # inside the seal, and the sealer stopped.
    assert event_time(stamp) is None
    out = decode(FakeRecord(_envelope(NOW, timestamp=stamp)), window=WINDOW)
    assert isinstance(out, Sealable)
    row = prepare(out, get_hasher("rfc6962-sha256")).tail
    assert None in row
    assert [timestamps.encode(v) for v in row if isinstance(v, datetime | int)]


def test_event_timestamps_at_the_ends_of_the_range_that_fit_stay_searchable() -> None:
    for stamp in ("0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59+01:00", "9999-12-31T23:59"):
        parsed = event_time(stamp)
        assert parsed is not None
        timestamps.encode(parsed)


# -- settings ------------------------------------------------------------------------------
def test_the_window_is_configured_in_seconds() -> None:
    settings = Settings.from_env(
        {"AUDITLOG_SEALER_MAX_PAST": "172800", "AUDITLOG_SEALER_MAX_FUTURE": "60"}
    )
    assert (settings.max_past, settings.max_future) == (172800, 60)
    assert (Settings().max_past, Settings().max_future) == (DEFAULT_MAX_PAST, DEFAULT_MAX_FUTURE)


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAX_PAST", "3600"), ("MAX_PAST", "inf"), ("MAX_FUTURE", "nan"), ("MAX_FUTURE", "-1")],
)
def test_a_window_that_would_lose_records_or_means_nothing_is_refused(
    name: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=f"AUDITLOG_SEALER_{name}"):
        Settings.from_env({f"AUDITLOG_SEALER_{name}": value})
