"""auditlog.runtime.clock writes the same text as the datetime formatting it replaced, across
seconds (its kept prefix must follow the clock) and over the whole range of years."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from auditlog.core.envelope import format_received_at
from auditlog.runtime import clock

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def instants() -> list[int]:
    """Nanoseconds since the epoch: edges of seconds, in order and back and forth, and random
    ones from 1970 to 9999."""
    rng = random.Random(29)
    second = 1_796_487_338 * 10**9
    edges = [second - 1, second, second + 1, second + 999_999_999, second + 10**9, second - 1]
    far = [rng.randrange(0, 253_402_300_799 * 10**9) for _ in range(2_000)]
    return [0, 1, *edges, *far, 253_402_300_799 * 10**9 + 999_999_999]


def as_datetime(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def test_received_at_as_the_core_formats_it() -> None:
    for ns in instants():
        assert clock.iso_us(ns) == format_received_at(as_datetime(ns)), ns


def test_pangea_times_and_log_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    for ns in instants():
        monkeypatch.setattr(clock, "time_ns", lambda ns=ns: ns)
        at = as_datetime(ns)
        # What pangea.now() wrote before: milliseconds, truncated, always three digits.
        assert clock.iso_ms() == at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert clock.iso_us() == format_received_at(at)
        stamped = clock.log_timestamp(None, "info", {"event": "x"})
        assert stamped == {"event": "x", "timestamp": format_received_at(at)}
        # structlog's TimeStamper(fmt="iso", utc=True) text, but for the fraction on the second.
        assert datetime.fromisoformat(str(stamped["timestamp"])) == at


def test_a_second_is_not_kept_past_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    base = 1_796_487_338 * 10**9
    for ns, want in [
        (base + 999_999_999, "2026-12-05T16:15:38.999Z"),
        (base + 10**9, "2026-12-05T16:15:39.000Z"),
        (base - 1, "2026-12-05T16:15:37.999Z"),
    ]:
        monkeypatch.setattr(clock, "time_ns", lambda ns=ns: ns)
        assert clock.iso_ms() == want
