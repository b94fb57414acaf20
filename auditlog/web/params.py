"""Integers from URLs: digits only, and small enough for PostgreSQL's ``bigint``.

``int()`` takes signs, spaces, underscores and any number of digits; a value past ``bigint``
would reach asyncpg and fail there as a driver error, after the request had used a connection.
Parsing at the edge turns every such value into the caller's mistake it is.
"""

from __future__ import annotations

__all__ = ["INT64_MAX", "non_negative_int"]

INT64_MAX = 2**63 - 1


def non_negative_int(text: str | None) -> int | None:
    """``text`` as an integer in 0..INT64_MAX, or None when it is anything else."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if value <= INT64_MAX else None
