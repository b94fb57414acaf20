from __future__ import annotations

import pytest

from sealer.batcher import Batcher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_batch_closes_at_max_size_and_keeps_order() -> None:
    b: Batcher[str, int] = Batcher(max_size=3, max_age=1.0, clock=Clock())
    closed = b.add("p0", 0, [1, 2, 3, 4, 5, 6, 7])
    assert [c.records for c in closed] == [[1, 2, 3], [4, 5, 6]]
    assert b.pending() == 1
    assert [c.records for c in b.drain()] == [[7]]


def test_a_batch_closes_at_max_age_measured_from_its_oldest_record() -> None:
    clock = Clock()
    b: Batcher[str, int] = Batcher(max_size=100, max_age=0.5, clock=clock)
    b.add("p0", 0, [1])
    clock.now += 0.3
    b.add("p0", 0, [2])
    b.add("p1", 0, [9])
    assert b.expired() == []
    assert b.next_deadline() == pytest.approx(0.2)
    clock.now += 0.2
    expired = b.expired()
    assert [(e.key, e.records) for e in expired] == [("p0", [1, 2])]
    assert (expired[0].opened_at, expired[0].closed_at) == (100.0, 100.5)
    clock.now += 0.3
    assert [(e.key, e.records) for e in b.expired()] == [("p1", [9])]
    assert b.next_deadline() is None


def test_records_of_an_old_generation_are_dropped() -> None:
    b: Batcher[str, int] = Batcher(max_size=10, max_age=1.0, clock=Clock())
    b.add("p0", 0, [1, 2])
    b.add("p0", 1, [3])
    (batch,) = b.drain()
    assert (batch.generation, batch.records) == (1, [3])


def test_drop_forgets_a_partition() -> None:
    b: Batcher[str, int] = Batcher(max_size=10, max_age=1.0, clock=Clock())
    b.add("p0", 0, [1])
    b.drop("p0")
    assert b.drain() == []


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Batcher(max_size=0)


def test_a_batch_due_by_age_waits_for_its_key_to_be_ready_and_keeps_growing() -> None:
    clock = Clock()
    busy = {"p0"}
    b: Batcher[str, int] = Batcher(max_size=100, max_age=0.5, clock=clock)
    b.add("p0", 0, [1])
    b.add("p1", 0, [7])
    clock.now += 0.5
    assert [e.key for e in b.expired(lambda k: k not in busy)] == ["p1"]
    # Held back: due again after the recheck interval, not at once (that would spin).
    assert b.next_deadline(lambda k: k not in busy, recheck=0.005) == pytest.approx(0.005)
    b.add("p0", 0, [2, 3])
    busy.clear()
    assert b.next_deadline(lambda k: k not in busy, recheck=0.005) == 0.0
    assert [(e.key, e.records) for e in b.expired(lambda k: k not in busy)] == [("p0", [1, 2, 3])]


def test_a_busy_key_still_closes_at_max_size() -> None:
    b: Batcher[str, int] = Batcher(max_size=2, max_age=0.5, clock=Clock())
    assert [c.records for c in b.add("p0", 0, [1, 2, 3])] == [[1, 2]]
    assert b.expired(lambda k: False) == []


def test_the_deadline_of_a_young_batch_ignores_readiness() -> None:
    clock = Clock()
    b: Batcher[str, int] = Batcher(max_size=10, max_age=0.5, clock=clock)
    b.add("p0", 0, [1])
    clock.now += 0.1
    assert b.next_deadline(lambda k: False, recheck=0.005) == pytest.approx(0.4)


def test_after_a_quiet_spell_a_batch_closes_at_max_age() -> None:
    clock = Clock()
    b: Batcher[str, int] = Batcher(max_size=100, max_age=0.05, clock=clock, min_interval=0.2)
    b.add("p0", 0, [1])
    clock.now += 0.05
    assert [e.records for e in b.expired()] == [[1]]
    clock.now += 5.0  # quiet: the interval since that closing has long passed
    b.add("p0", 0, [2])
    assert b.next_deadline() == pytest.approx(0.05)
    clock.now += 0.05
    assert [e.records for e in b.expired()] == [[2]]


def test_under_steady_load_a_key_closes_by_age_once_per_min_interval() -> None:
    clock = Clock()
    b: Batcher[str, int] = Batcher(max_size=100, max_age=0.05, clock=clock, min_interval=0.2)
    b.add("p0", 0, [1])
    clock.now += 0.05
    assert [e.records for e in b.expired()] == [[1]]
    b.add("p0", 0, [2])
    b.add("p1", 0, [7])  # another key keeps its own pace
    clock.now += 0.05
    assert [(e.key, e.records) for e in b.expired()] == [("p1", [7])]
    # p0's batch is old enough, but its previous one closed only 0.05 s ago: it grows.
    assert b.next_deadline() == pytest.approx(0.15)
    clock.now += 0.1
    b.add("p0", 0, [3])
    assert b.expired() == []
    clock.now += 0.06  # past 100.25 whatever the float sums above round to
    (batch,) = b.expired()
    assert (batch.key, batch.records, batch.closed_at) == ("p0", [2, 3], pytest.approx(100.26))


def test_a_batch_closed_by_size_starts_the_interval_and_size_ignores_it() -> None:
    clock = Clock()
    b: Batcher[str, int] = Batcher(max_size=2, max_age=0.05, clock=clock, min_interval=0.2)
    assert [c.records for c in b.add("p0", 0, [1, 2, 3, 4, 5])] == [[1, 2], [3, 4]]
    clock.now += 0.05
    assert b.expired() == []  # [5] is old enough, but a batch closed 0.05 s ago
    clock.now += 0.16
    assert [e.records for e in b.expired()] == [[5]]


def test_drop_forgets_the_interval_too() -> None:
    clock = Clock()
    b: Batcher[str, int] = Batcher(max_size=100, max_age=0.05, clock=clock, min_interval=0.2)
    b.add("p0", 0, [1])
    clock.now += 0.05
    b.expired()
    b.drop("p0")  # reassigned: the new owner's first batch closes at max_age
    b.add("p0", 1, [2])
    clock.now += 0.05
    assert [e.records for e in b.expired()] == [[2]]


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        Batcher(min_interval=-1)
