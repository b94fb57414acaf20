"""Per-partition batching by size or age, with an injected clock.

A batch closes when it holds ``max_size`` records or when its oldest record has waited
``max_age`` seconds, whichever comes first. The batcher is plain data and arithmetic (no
asyncio), so tests drive time by hand; the sealer's fetch loop feeds it and hands closed batches
to the seal worker through a bounded queue.

Each batch carries its partition's *generation*: the sealer bumps it whenever the partition's
read position is reset (assignment, fencing, revocation), so batches fetched before the reset
are recognised as stale and dropped instead of being sealed out of order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")

DEFAULT_BATCH_MAX_SIZE = 5000
DEFAULT_BATCH_MAX_AGE = 0.1


@dataclass(slots=True)
class Batch(Generic[K, R]):
    key: K
    generation: int
    records: list[R] = field(default_factory=list)
    opened_at: float = 0.0


class Batcher(Generic[K, R]):
    def __init__(
        self,
        max_size: int = DEFAULT_BATCH_MAX_SIZE,
        max_age: float = DEFAULT_BATCH_MAX_AGE,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if max_size < 1 or max_age <= 0:
            raise ValueError("max_size must be >= 1 and max_age > 0")
        self.max_size = max_size
        self.max_age = max_age
        self.clock = clock or time.monotonic
        self._open: dict[K, Batch[K, R]] = {}

    def add(self, key: K, generation: int, records: Sequence[R]) -> list[Batch[K, R]]:
        """Buffer records; returns the batches that became full, in order."""
        closed: list[Batch[K, R]] = []
        batch = self._open.get(key)
        if batch is not None and batch.generation != generation:
            del self._open[key]  # fetched before a reset: stale
            batch = None
        for record in records:
            if batch is None:
                batch = Batch(key, generation, [], self.clock())
                self._open[key] = batch
            batch.records.append(record)
            if len(batch.records) >= self.max_size:
                closed.append(self._open.pop(key))
                batch = None
        return closed

    def expired(self) -> list[Batch[K, R]]:
        """Close and return the batches whose oldest record waited ``max_age`` or more."""
        now = self.clock()
        due = [k for k, b in self._open.items() if now - b.opened_at >= self.max_age]
        return [self._open.pop(k) for k in due]

    def drain(self) -> list[Batch[K, R]]:
        """Close every open batch (shutdown)."""
        batches = list(self._open.values())
        self._open.clear()
        return batches

    def drop(self, key: K) -> None:
        self._open.pop(key, None)

    def next_deadline(self) -> float | None:
        """Seconds until the oldest open batch expires; None when nothing is open."""
        if not self._open:
            return None
        oldest = min(b.opened_at for b in self._open.values())
        return max(0.0, oldest + self.max_age - self.clock())

    def pending(self) -> int:
        return sum(len(b.records) for b in self._open.values())
