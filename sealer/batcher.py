"""Per-partition batching by size or age, with an injected clock.

A batch closes when it holds ``max_size`` records or when its oldest record has waited
``max_age`` seconds, whichever comes first; a batch due by age closes only once its key is
*ready*. The sealer calls a partition ready when none of its batches is queued or sealing, so
the records that arrive during a seal join the next batch instead of queueing behind it as a
batch of their own (group commit): under load batches grow, and each seal starts as soon as the
one before it ends. The batcher is plain data and arithmetic (no asyncio), so tests drive time
by hand; the sealer's fetch loop feeds it and hands closed batches to the seal worker through a
bounded queue.

A key's batches close by age at most once per ``min_interval`` (counted from the previous
closing): an event arriving after a quiet spell is sealed ``max_age`` later, but under steady
load a partition seals a few times a second instead of every ``max_age``. Each seal costs ~2 ms
of CPU (sealer and PostgreSQL) whatever its size, so at thousands of events a second per
partition the interval saves more CPU than the short age costs latency (docs/performance.md).

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
# With group commit a short age costs little under load (a batch held back by its partition's
# seal grows meanwhile); at 50 ms instead of 100, latency fell by about the difference
# (docs/performance.md).
DEFAULT_BATCH_MAX_AGE = 0.05
DEFAULT_BATCH_MIN_INTERVAL = 0.2


def _always(key: object) -> bool:
    return True


@dataclass(slots=True)
class Batch(Generic[K, R]):
    key: K
    generation: int
    records: list[R] = field(default_factory=list)
    opened_at: float = 0.0
    closed_at: float = 0.0


class Batcher(Generic[K, R]):
    def __init__(
        self,
        max_size: int = DEFAULT_BATCH_MAX_SIZE,
        max_age: float = DEFAULT_BATCH_MAX_AGE,
        clock: Callable[[], float] | None = None,
        min_interval: float = 0.0,
    ) -> None:
        if max_size < 1 or max_age <= 0 or min_interval < 0:
            raise ValueError("max_size must be >= 1, max_age > 0 and min_interval >= 0")
        self.max_size = max_size
        self.max_age = max_age
        self.min_interval = min_interval
        self.clock = clock or time.monotonic
        self._open: dict[K, Batch[K, R]] = {}
        # When each key's last batch closed, by size or age: what min_interval counts from.
        # One float per partition ever owned; drop() forgets it with the batch.
        self._closed: dict[K, float] = {}

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
                closed.append(self._close(key))
                batch = None
        return closed

    def _due_at(self, key: K, batch: Batch[K, R]) -> float:
        """When ``batch`` may close by age: its oldest record ``max_age`` old, and the key's
        previous batch closed ``min_interval`` before."""
        due = batch.opened_at + self.max_age
        last = self._closed.get(key)
        if last is not None and self.min_interval > 0:
            due = max(due, last + self.min_interval)
        return due

    def expired(self, ready: Callable[[K], bool] = _always) -> list[Batch[K, R]]:
        """Close and return the batches due by age (:meth:`_due_at`) of the keys ``ready``
        accepts; the others stay open and keep growing."""
        now = self.clock()
        due = [k for k, b in self._open.items() if now >= self._due_at(k, b) and ready(k)]
        return [self._close(k) for k in due]

    def drain(self) -> list[Batch[K, R]]:
        """Close every open batch (shutdown)."""
        return [self._close(k) for k in list(self._open)]

    def _close(self, key: K) -> Batch[K, R]:
        batch = self._open.pop(key)
        batch.closed_at = self._closed[key] = self.clock()
        return batch

    def drop(self, key: K) -> None:
        self._open.pop(key, None)
        self._closed.pop(key, None)

    def next_deadline(
        self, ready: Callable[[K], bool] = _always, recheck: float = 0.0
    ) -> float | None:
        """Seconds until the next batch can close by age; None when nothing is open.

        A batch past its age whose key is not ready can close whenever the key becomes ready,
        which the batcher cannot see: it is due again in ``recheck`` seconds.
        """
        if not self._open:
            return None
        now = self.clock()
        waits = []
        for key, batch in self._open.items():
            left = self._due_at(key, batch) - now
            waits.append(left if left > 0 else 0.0 if ready(key) else recheck)
        return min(waits)

    def holds(self, key: K) -> bool:
        """An open batch of ``key`` holds records."""
        return key in self._open

    def pending(self) -> int:
        return sum(len(b.records) for b in self._open.values())
