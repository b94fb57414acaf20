"""The sealer's received times as integers: the same instants asyncpg's datetimes would store."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from auditlog.core.envelope import format_received_at, parse_received_at
from sealer import timestamps
from sealer.timestamps import EPOCH, decode, encode, micros, received_micros


def _random_instants(n: int) -> list[datetime]:
    rng = random.Random(20261126)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    span = int((datetime(2100, 1, 1, tzinfo=UTC) - start).total_seconds() * 1_000_000)
    picks = [start + timedelta(microseconds=rng.randrange(span)) for _ in range(n)]
    # Second, day, month and leap-day boundaries, where a cached second could go wrong.
    picks += [
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 3, 1, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        EPOCH,
    ]
    return picks


def test_a_received_at_reads_as_the_instant_it_spells() -> None:
    for dt in _random_instants(5000):
        text = format_received_at(dt)
        assert received_micros(text) == micros(parse_received_at(text))
        assert EPOCH + timedelta(microseconds=received_micros(text)) == dt
        assert received_micros(text) == received_micros(text)  # from the cache, the same


def test_the_cache_of_seconds_stays_bounded() -> None:
    base = datetime(2026, 11, 26, tzinfo=UTC)
    for i in range(timestamps._SECONDS_CACHED + 10):
        dt = base + timedelta(seconds=i, microseconds=i)
        assert received_micros(format_received_at(dt)) == micros(dt)
    assert len(timestamps._seconds) <= timestamps._SECONDS_CACHED


def test_micros_takes_any_zone_and_counts_from_2000() -> None:
    assert micros(EPOCH) == 0
    assert micros(datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == 1
    assert micros(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)) == -1_000_000
    plus_two = datetime(2026, 11, 26, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert micros(plus_two) == micros(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))


def test_the_codec_round_trips_integers_and_datetimes() -> None:
    for dt in _random_instants(500):
        assert encode(micros(dt)) == (micros(dt),)
        assert encode(dt) == (micros(dt),)
        assert decode(encode(dt)) == dt
        assert decode(encode(dt)).tzinfo is UTC
    naive = datetime(2026, 11, 26, 10, 0)  # local time, as asyncpg reads a naive datetime
    assert encode(naive) == (micros(naive.astimezone(UTC)),)
    assert decode(encode(datetime.max)) == datetime.max
    assert decode(encode(datetime.min)) == datetime.min


def test_the_codec_refuses_what_is_not_a_time() -> None:
    with pytest.raises(TypeError, match="microseconds since 2000"):
        encode("2026-11-26T10:00:00Z")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode(1.5)  # type: ignore[arg-type]
