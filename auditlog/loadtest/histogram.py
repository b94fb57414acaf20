"""A log-bucketed latency histogram in the manner of HdrHistogram, in pure Python.

Values are whole microseconds. Below 256 µs every value has its own bucket; above, each power of
two is cut into 128 buckets, so a reported value is within 1/128 (0.8 %) of the true one, at any
magnitude, whatever the number of values. Buckets are kept in a dict: a run of a million
requests whose latencies span 100 µs to 30 s needs about 2,000 of them.

A percentile is the highest value of the bucket that holds that rank (HdrHistogram's convention:
never lower than the truth), capped by the largest value recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

_SUB_BITS: Final = 7
_SUB: Final = 1 << _SUB_BITS  # buckets per power of two above the exact range
_EXACT: Final = 2 * _SUB  # values below this have a bucket each

PERCENTILES: Final = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0)


def bucket_of(value: int) -> int:
    """The bucket index of a non-negative value."""
    if value < _EXACT:
        return value
    shift = value.bit_length() - (_SUB_BITS + 1)
    top = value >> shift  # in [_SUB, 2 * _SUB)
    return _EXACT + (shift - 1) * _SUB + (top - _SUB)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest value that fall in bucket ``index``."""
    if index < _EXACT:
        return index, index
    shift = (index - _EXACT) // _SUB + 1
    top = (index - _EXACT) % _SUB + _SUB
    return top << shift, ((top + 1) << shift) - 1


@dataclass(slots=True)
class Histogram:
    """Counts of microsecond values by bucket, with exact count, min, max and sum."""

    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: int = 0
    min: int = 0
    max: int = 0

    def record(self, value: int) -> None:
        value = max(0, value)
        b = bucket_of(value)
        self.counts[b] = self.counts.get(b, 0) + 1
        if self.count == 0 or value < self.min:
            self.min = value
        self.max = max(value, self.max)
        self.count += 1
        self.total += value

    def record_seconds(self, seconds: float) -> None:
        self.record(round(seconds * 1_000_000))

    def merge(self, other: Histogram) -> None:
        if other.count == 0:
            return
        for b, n in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def percentile(self, p: float) -> int:
        """The value at or below which ``p`` % of the values lie (0 for an empty histogram)."""
        if self.count == 0:
            return 0
        if p <= 0:
            return self.min
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(self.max, bucket_bounds(b)[1])
        return self.max

    def buckets(self) -> list[tuple[int, int, int]]:
        """(lowest, highest, count) of every non-empty bucket, in order."""
        return [(*bucket_bounds(b), self.counts[b]) for b in sorted(self.counts)]

    def summary_ms(self, percentiles: Iterable[float] = PERCENTILES) -> dict[str, float | int]:
        """Count, min, mean, max and percentiles in milliseconds (what the JSON report holds)."""
        out: dict[str, float | int] = {"count": self.count}
        if self.count == 0:
            return out
        out["min"] = self.min / 1000
        out["mean"] = round(self.mean / 1000, 3)
        for p in percentiles:
            out[f"p{p:g}"] = self.percentile(p) / 1000
        out["max"] = self.max / 1000
        return out

    def to_json(self) -> dict[str, object]:
        """The buckets themselves, so another tool can merge or re-plot the distribution."""
        return {"unit": "us", "sub_buckets": _SUB, "counts": dict(sorted(self.counts.items()))}
