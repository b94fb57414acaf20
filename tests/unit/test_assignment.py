"""The sealers' load-aware partition assignment (sealer/assignment.py)."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.errors import KafkaConnectionError

from sealer.assignment import LoadAssignor, Rates, balance, heaviest, spread, uneven

T = "audit.events"


def tps(*partitions: int, topic: str = T) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in partitions]


def best_possible(loads: dict[TopicPartition, float], members: int) -> float:
    """The smallest busiest-member load over every assignment (brute force)."""
    parts = list(loads)
    best = math.inf
    for owners in itertools.product(range(members), repeat=len(parts)):
        totals = [0.0] * members
        for tp, owner in zip(parts, owners, strict=True):
            totals[owner] += loads[tp]
        best = min(best, max(totals))
    return best


def test_spread_without_loads_deals_partitions_evenly() -> None:
    plan = spread(dict.fromkeys(tps(0, 1, 2, 3, 4), 0.0), ["b", "a"])
    assert plan == {"a": tps(0, 2, 4), "b": tps(1, 3)}


def test_spread_separates_the_hot_partitions() -> None:
    # The tenant mix of the benchmarks: two of four partitions carry ~85 % of the events, and
    # they are the two a count-based assignment gives one member.
    loads = dict(zip(tps(0, 1, 2, 3), [6_700.0, 1_200.0, 6_100.0, 1_000.0], strict=True))
    plan = spread(loads, ["m1", "m2"])
    owner = {tp: m for m, parts in plan.items() for tp in parts}
    assert owner[TopicPartition(T, 0)] != owner[TopicPartition(T, 2)]
    assert heaviest(plan, loads) == 7_700.0
    assert heaviest({"m1": tps(0, 2), "m2": tps(1, 3)}, loads) == 12_800.0


def test_spread_gives_every_partition_to_one_member() -> None:
    rng = random.Random(29)
    for _ in range(200):
        n, m = rng.randint(0, 12), rng.randint(1, 5)
        loads = {tp: rng.choice([0.0, rng.uniform(0, 5_000)]) for tp in tps(*range(n))}
        plan = spread(loads, [f"m{i}" for i in range(m)])
        assigned = [tp for parts in plan.values() for tp in parts]
        assert sorted(assigned) == sorted(loads)
        assert set(plan) == {f"m{i}" for i in range(m)}
        counts = [len(parts) for parts in plan.values()]
        if not any(loads.values()):
            assert max(counts) - min(counts) <= 1


def test_spread_is_within_four_thirds_of_the_best() -> None:
    # Largest-first to the least loaded is Graham's LPT: its busiest member carries at most
    # (4/3 - 1/(3m)) of the best possible.
    rng = random.Random(6962)
    for _ in range(150):
        n, m = rng.randint(1, 7), rng.randint(2, 3)
        loads = {tp: float(rng.randint(1, 100)) for tp in tps(*range(n))}
        got = heaviest(spread(loads, [f"m{i}" for i in range(m)]), loads)
        assert got <= best_possible(loads, m) * (4 / 3 - 1 / (3 * m)) + 1e-9


def test_spread_with_no_members() -> None:
    assert spread({TopicPartition(T, 0): 1.0}, []) == {}


def test_uneven_when_a_rebalance_pays() -> None:
    loads = dict(zip(tps(0, 1, 2, 3), [3_000.0, 100.0, 2_800.0, 100.0], strict=True))
    plan = {"a": tps(0, 2), "b": tps(1, 3)}
    relief = uneven(plan, loads)
    assert relief is not None
    assert (relief.now, relief.best) == (5_800.0, 3_000.0)
    assert heaviest(relief.plan, loads) == 3_000.0
    # Already the best spread: nothing to gain.
    assert uneven(relief.plan, loads) is None


def test_uneven_ignores_small_or_idle_differences() -> None:
    plan = {"a": tps(0, 2), "b": tps(1, 3)}
    # 200 events/s to gain: below the absolute floor whatever the share.
    idle = dict(zip(tps(0, 1, 2, 3), [200.0, 0.0, 200.0, 0.0], strict=True))
    assert uneven(plan, idle) is None
    assert uneven(plan, idle, min_excess=100.0) is not None
    # 1,000 events/s to gain (10,000 against 9,000), but a ninth of the busiest member's load.
    busy = dict(zip(tps(0, 1, 2, 3), [5_000.0, 4_000.0, 5_000.0, 3_000.0], strict=True))
    assert uneven(plan, busy) is None
    assert uneven(plan, busy, min_gain=0.1) is not None


def test_rates_smooth_each_partition() -> None:
    rates = Rates(smoothing=30.0)
    p0, p1 = tps(0, 1)
    rates.observe(0.0, {p0: 100, p1: 0})
    assert rates.current() == {}
    assert not rates.known([p0])
    rates.observe(5.0, {p0: 5_100, p1: 50})
    assert rates.current() == {p0: 1_000.0, p1: 10.0}
    assert rates.known([p0, p1])
    rates.observe(10.0, {p0: 5_100, p1: 50})
    moved = 1 - math.exp(-5 / 30)
    assert rates.current()[p0] == pytest.approx(1_000.0 * (1 - moved))
    # No time between two samples: the second is ignored.
    rates.observe(10.0, {p0: 9_999})
    assert rates.current()[p0] == pytest.approx(1_000.0 * (1 - moved))


def test_rates_start_over_when_an_end_offset_goes_back() -> None:
    rates = Rates()
    p0 = TopicPartition(T, 0)
    rates.observe(0.0, {p0: 1_000})
    rates.observe(1.0, {p0: 2_000})
    rates.observe(2.0, {p0: 10})  # the topic made again
    assert not rates.known([p0])
    rates.observe(3.0, {p0: 110})
    assert rates.current() == {p0: 100.0}


@dataclass
class Cluster:
    partitions: dict[str, set[int]]

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


def member(*topics: str) -> Any:
    return ConsumerProtocolMemberMetadata(0, list(topics), b"")


def known_rates(clock: Clock, per_partition: list[float]) -> Rates:
    rates = Rates()
    parts = tps(*range(len(per_partition)))
    rates.observe(clock.now - 10, dict.fromkeys(parts, 0))
    rates.observe(clock.now, {tp: int(r * 10) for tp, r in zip(parts, per_partition, strict=True)})
    return rates


def test_the_leader_holds_its_plan_once_the_group_synced() -> None:
    clock = Clock()
    assignor = LoadAssignor(known_rates(clock, [3_000, 100, 2_800, 100]), clock)
    assignor.metadata([T])
    members = {"m1": member(T), "m2": member(T)}
    answer = assignor.assign(Cluster({T: {0, 1, 2, 3}}), members)
    assert assignor.plan is None  # not before the group synced
    by_member = {m: sorted(a.partitions()) for m, a in answer.items()}
    assert by_member == {"m1": tps(0), "m2": tps(1, 2, 3)}
    assignor.on_assignment(answer["m1"])
    assert assignor.plan == {"m1": tps(0), "m2": tps(1, 2, 3)}
    assert assignor.planned_at == clock.now
    assert not assignor.planned_blind


def test_a_member_that_did_not_assign_holds_no_plan() -> None:
    clock = Clock()
    assignor = LoadAssignor(known_rates(clock, [1.0, 1.0]), clock)
    assignor.metadata([T])
    answer = assignor.assign(Cluster({T: {0, 1}}), {"m1": member(T), "m2": member(T)})
    assignor.on_assignment(answer["m1"])
    assert assignor.plan is not None
    # The next join: another member leads it.
    assignor.metadata([T])
    assignor.on_assignment(answer["m2"])
    assert assignor.plan is None
    # A join whose sync failed after this member assigned: the next join forgets that plan.
    assignor.assign(Cluster({T: {0, 1}}), {"m1": member(T), "m2": member(T)})
    assignor.metadata([T])
    assignor.on_assignment(answer["m2"])
    assert assignor.plan is None


def test_members_of_other_topics_are_dealt_partitions_by_count() -> None:
    assignor = LoadAssignor(Rates(), Clock())
    assignor.metadata([T])
    answer = assignor.assign(
        Cluster({T: {0, 1}, "other": {0}}), {"m1": member(T), "m2": member(T, "other")}
    )
    assert sorted(answer["m1"].partitions()) == tps(0)
    assert sorted(answer["m2"].partitions()) == [*tps(1), *tps(0, topic="other")]
    assignor.on_assignment(answer["m1"])
    assert assignor.plan is None  # no plan to watch


def test_a_rebalance_is_due_after_the_interval_or_after_a_blind_plan() -> None:
    clock = Clock()
    rates = Rates()
    assignor = LoadAssignor(rates, clock)
    cluster, members = Cluster({T: {0, 1, 2, 3}}), {"m1": member(T), "m2": member(T)}
    assignor.metadata([T])
    assignor.on_assignment(assignor.assign(cluster, members)["m1"])
    assert assignor.planned_blind
    assert assignor.plan == {"m1": tps(0, 2), "m2": tps(1, 3)}
    assert assignor.due(60.0) is None  # no rates yet
    rates.observe(clock.now, dict.fromkeys(tps(0, 1, 2, 3), 0))
    clock.now += 5
    rates.observe(clock.now, dict(zip(tps(0, 1, 2, 3), [15_000, 500, 14_000, 500], strict=True)))
    relief = assignor.due(60.0)  # blind: at once
    assert relief is not None and (relief.now, relief.best) == (5_800.0, 3_000.0)
    assert assignor.due(0.0) is None  # never
    # A plan made with these rates: the next one only after the interval, and only if uneven.
    assignor.metadata([T])
    assignor.on_assignment(assignor.assign(cluster, members)["m1"])
    assert not assignor.planned_blind and assignor.due(60.0) is None
    assignor.plan = {"m1": tps(0, 2), "m2": tps(1, 3)}  # as if the rates had turned since
    assert assignor.due(60.0) is None
    clock.now += 60
    assert assignor.due(60.0) is not None


@dataclass
class Coordinator:
    rejoins: int = 0

    def request_rejoin(self) -> None:
        self.rejoins += 1


@dataclass
class Consumer:
    """The three calls the balance loop makes of an aiokafka consumer."""

    ends: list[dict[TopicPartition, int]]
    stopping: asyncio.Event
    _coordinator: Coordinator = field(default_factory=Coordinator)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        # The last sample is given again as the loop is told to stop.
        if len(self.ends) == 1:
            self.stopping.set()
            return self.ends[0]
        return self.ends.pop(0)


async def test_the_leader_asks_once_for_the_rebalance_that_evens_the_load() -> None:
    clock = Clock()
    assignor = LoadAssignor(Rates(), clock)
    assignor.metadata([T])
    assignor.on_assignment(
        assignor.assign(Cluster({T: {0, 1, 2, 3}}), {"m1": member(T), "m2": member(T)})["m1"]
    )
    parts = tps(0, 1, 2, 3)
    samples = [
        {tp: n * step for tp, step in zip(parts, [300, 10, 280, 10], strict=True)} for n in range(4)
    ]
    stopping = asyncio.Event()
    consumer = Consumer(samples, stopping)

    def tick() -> float:
        clock.now += 0.1
        return clock.now

    assignor.clock = tick
    await balance(consumer, assignor, T, 60.0, stopping, every=0)
    assert consumer._coordinator.rejoins == 1
    assert assignor.plan is None


def test_it_shares_round_robins_protocol_with_older_sealers() -> None:
    # Older sealers offer only round robin: a group of both kinds must agree on one protocol,
    # with metadata both read alike.
    ours = LoadAssignor(Rates()).metadata([T]).encode()
    theirs = RoundRobinPartitionAssignor.metadata([T]).encode()
    assert (LoadAssignor.name, ours) == (RoundRobinPartitionAssignor.name, theirs)


@dataclass
class Flaky(Consumer):
    """A consumer whose first requests for end offsets fail, as a broker going away would."""

    failures: list[BaseException] = field(default_factory=list)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.failures:
            raise self.failures.pop(0)
        return await super().end_offsets(partitions)


async def test_a_failed_turn_does_not_stop_the_balance() -> None:
    clock = Clock()
    assignor = LoadAssignor(Rates(), clock)
    stopping = asyncio.Event()
    consumer = Flaky(
        [dict.fromkeys(tps(0, 1, 2, 3), 0), dict.fromkeys(tps(0, 1, 2, 3), 100)],
        stopping,
        failures=[KafkaConnectionError(), RuntimeError("a bug")],
    )

    def tick() -> float:
        clock.now += 1
        return clock.now

    assignor.clock = tick
    await balance(consumer, assignor, T, 60.0, stopping, every=0)
    # Both samples after the failures were taken: 100 events in the second between them.
    assert assignor.rates.current() == dict.fromkeys(tps(0, 1, 2, 3), 100.0)
