"""The month an event's row goes to: by its received_at in UTC, whatever offset it carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sealer.timestamps import micros, month


def _month(dt: datetime) -> tuple[int, int]:
    return month(micros(dt))


def test_a_utc_time_is_its_own_month() -> None:
    assert _month(datetime.fromisoformat("2026-11-30T23:59:59.999999Z")) == (2026, 11)


def test_an_offset_time_counts_in_utc() -> None:
    plus_one = timezone(timedelta(hours=1))
    assert _month(datetime(2026, 12, 1, 0, 30, tzinfo=plus_one)) == (2026, 11)
    assert _month(datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1)))) == (2027, 1)
    assert _month(datetime(2026, 1, 1, tzinfo=UTC)) == (2026, 1)


def test_the_second_before_2000_is_in_december_1999() -> None:
    assert _month(datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == (1999, 12)
