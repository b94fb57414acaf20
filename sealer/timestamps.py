"""``timestamptz`` values as PostgreSQL stores them: microseconds since 2000-01-01 UTC.

asyncpg's own encoder turns each ``datetime`` into that integer with two comparisons against
infinity, an ``astimezone`` and a ``timedelta``: 0.3 to 0.8 µs per value more than taking the
integer as it is (``bench/bench_copy.py``), up to a twentieth of the sealer's CPU per event.
The sealer instead carries every received time as that integer from the start
(:func:`received_micros` reads it off the envelope's fixed ``received_at`` spelling, one
``datetime`` per second of arrivals) and registers :func:`encode` and :func:`decode` on its
connections, where an integer goes through untouched and a ``datetime`` takes a shorter route
than asyncpg's to the same value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

__all__ = [
    "EPOCH",
    "decode",
    "encode",
    "micros",
    "month",
    "received_micros",
    "register",
]

EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
# PostgreSQL's +-infinity, which asyncpg maps to datetime.max and datetime.min.
_INFINITY: Final = 2**63 - 1
_MINUS_INFINITY: Final = -(2**63)
_SECONDS_CACHED: Final = 4096

_seconds: dict[str, int] = {}


def micros(dt: datetime) -> int:
    """``dt`` in microseconds since :data:`EPOCH`; a naive datetime is local time, as asyncpg
    takes it."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def received_micros(received_at: str) -> int:
    """An envelope's ``received_at`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, already checked by
    :func:`auditlog.core.envelope.parse_received_at`) in microseconds since :data:`EPOCH`.

    Events arrive thousands to a second, so the whole seconds are computed once per second seen.
    """
    second = received_at[:19]
    base = _seconds.get(second)
    if base is None:
        if len(_seconds) >= _SECONDS_CACHED:
            _seconds.clear()
        base = micros(datetime.fromisoformat(second).replace(tzinfo=UTC))
        _seconds[second] = base
    return base + int(received_at[20:26])


def month(value: int) -> tuple[int, int]:
    """(year, month) in UTC of a time in microseconds since :data:`EPOCH`."""
    dt = EPOCH + timedelta(microseconds=value)
    return dt.year, dt.month


def encode(value: int | datetime) -> tuple[int]:
    """asyncpg's ``tuple`` format of a ``timestamptz``: an integer as is, a datetime converted."""
    if type(value) is int:
        return (value,)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime or microseconds since 2000, got {value!r}")
    if value.tzinfo is None:  # the infinities are naive; an aware value is never one
        if value == datetime.max:
            return (_INFINITY,)
        if value == datetime.min:
            return (_MINUS_INFINITY,)
    return (micros(value),)


def decode(value: tuple[int]) -> datetime:
    """An aware UTC datetime, as asyncpg's own decoder returns (infinities as it maps them)."""
    (stored,) = value
    if stored == _INFINITY:
        return datetime.max
    if stored == _MINUS_INFINITY:
        return datetime.min
    return EPOCH + timedelta(microseconds=stored)


async def register(conn: asyncpg.Connection) -> None:
    """Use :func:`encode` and :func:`decode` for ``timestamptz`` on ``conn``."""
    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=encode, decoder=decode, format="tuple"
    )
