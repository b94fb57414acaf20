"""Partitions spread over the group's sealers by the events each receives.

A partition is one log and is sealed by one sealer, and its load is whatever its producers send
it: with tenants as keys a few partitions often carry most events. Kafka's stock assignors count
partitions, so two busy partitions can land on one sealer while another idles, and a sealer is
one Python process: on 2 vCPUs at 20k realistic events/s, the sealer given the two partitions
with ~85 % of the events fell behind (p99 1.3-6.7 s in one-minute runs) where the same load spread
by rate held at p99 0.7-1.0 s (bench/JOURNAL.md, 2026-12-05 18:40).

Here each sealer samples the topic's end offsets every :data:`SAMPLE_SECONDS` and keeps each
partition's incoming rate (events/s, smoothed over about :data:`SMOOTHING_SECONDS`). Whichever
sealer leads the group's rebalance spreads the partitions by those rates (:func:`spread`: the
heaviest first, each to the least loaded sealer; with no rates yet, by count). The leader then
keeps comparing the plan it made with the best one for the current rates, and asks the group to
rebalance when the busiest sealer would shed at least a quarter of its load and
:data:`MIN_EXCESS` events/s (:func:`uneven`), at most once per
``AUDITLOG_SEALER_REBALANCE_INTERVAL`` seconds after a plan made with rates (a plan made before
any rate was known may be corrected as soon as one is). A rebalance pauses every sealer for a
second or so (the group's members notice it on their next heartbeat); a sealer that had a
partition before keeps nothing of it, and the next owner starts from the partition's head in
PostgreSQL, as after any rebalance.

The assignor goes by Kafka's protocol name ``roundrobin``, with round robin's member metadata:
sealers of older versions offer only that protocol, so during a rolling upgrade both kinds share
the group, and whichever leads it assigns (an older leader by count, a newer one by load; members
take any assignment they are given). Offering a second protocol under a name of its own, the
usual way to change assignors, does not work with aiokafka 0.14: it sends one JoinGroup per
assignor offered, the later ones with more protocols, and the group takes each for changed
metadata and rebalances again, in a loop that held two sealers out of work for over 30 s in a
benchmark (aio-libs/aiokafka#1168).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from auditlog.runtime.eventloop import pause

__all__ = [
    "ASSIGNOR_NAME",
    "DEFAULT_REBALANCE_INTERVAL",
    "LoadAssignor",
    "Rates",
    "heaviest",
    "spread",
    "uneven",
]

log = structlog.get_logger("sealer.assignment")

# Shared with the stock assignor on purpose (the module's docstring says why).
ASSIGNOR_NAME: Final = RoundRobinPartitionAssignor.name
# The leader asks for a rebalance at most this often (seconds; 0: never, plans are then made
# only at the rebalances members joining or leaving cause).
DEFAULT_REBALANCE_INTERVAL: Final = 60.0
SAMPLE_SECONDS: Final = 5.0
SMOOTHING_SECONDS: Final = 30.0
# A rebalance pauses every partition for seconds: asked for only when the busiest sealer would
# shed this share of its load and this many events/s.
MIN_GAIN: Final = 0.25
MIN_EXCESS: Final = 250.0
# The end offsets' request, bounded: a slow broker delays the next sample, not the sealer.
SAMPLE_TIMEOUT: Final = 10.0

REBALANCES = Counter(
    "auditlog_sealer_rebalances_requested_total",
    "Rebalances this sealer, leading the group, asked for to even out its members' load",
)

Plan = dict[str, list[TopicPartition]]


def spread(loads: Mapping[TopicPartition, float], members: Sequence[str]) -> Plan:
    """Each partition to a member, the heaviest first, each to the member with the least load
    so far (then the fewest partitions, then the first by id): within 4/3 of the best possible
    busiest member, and an even count when no load is known."""
    plan: Plan = {m: [] for m in sorted(members)}
    if not plan:
        return plan
    load = dict.fromkeys(plan, 0.0)
    for tp in sorted(loads, key=lambda tp: (-loads[tp], tp.topic, tp.partition)):
        member = min(plan, key=lambda m: (load[m], len(plan[m]), m))
        plan[member].append(tp)
        load[member] += loads[tp]
    for parts in plan.values():
        parts.sort()
    return plan


def heaviest(
    plan: Mapping[str, Sequence[TopicPartition]], loads: Mapping[TopicPartition, float]
) -> float:
    """The load of the plan's busiest member."""
    return max((sum(loads.get(tp, 0.0) for tp in parts) for parts in plan.values()), default=0.0)


@dataclass(frozen=True, slots=True)
class Unevenness:
    """A plan's busiest member against the best plan's, for the same rates."""

    now: float
    best: float
    plan: Plan


def uneven(
    plan: Mapping[str, Sequence[TopicPartition]],
    loads: Mapping[TopicPartition, float],
    *,
    min_gain: float = MIN_GAIN,
    min_excess: float = MIN_EXCESS,
) -> Unevenness | None:
    """How much a rebalance would relieve the busiest member, when that pays for its pause."""
    partitions = {tp for parts in plan.values() for tp in parts}
    best_plan = spread({tp: loads.get(tp, 0.0) for tp in partitions}, list(plan))
    now, best = heaviest(plan, loads), heaviest(best_plan, loads)
    if now - best >= max(min_excess, min_gain * best):
        return Unevenness(now, best, best_plan)
    return None


class Rates:
    """Each partition's incoming events/s, from its end offset sampled now and then.

    An exponential moving average with time constant ``smoothing`` seconds: the first rate a
    partition shows is taken as is, later ones move it by how long they spanned. An end offset
    that went back (the topic deleted and made again) starts the partition over.
    """

    def __init__(self, smoothing: float = SMOOTHING_SECONDS) -> None:
        self._smoothing = smoothing
        self._last: dict[TopicPartition, tuple[float, int]] = {}
        self._rate: dict[TopicPartition, float] = {}

    def observe(self, at: float, ends: Mapping[TopicPartition, int]) -> None:
        for tp, end in ends.items():
            last = self._last.get(tp)
            self._last[tp] = (at, end)
            if last is None or end < last[1]:
                self._rate.pop(tp, None)
                continue
            span = at - last[0]
            if span <= 0:
                self._last[tp] = last
                continue
            rate = (end - last[1]) / span
            before = self._rate.get(tp)
            if before is None:
                self._rate[tp] = rate
            else:
                self._rate[tp] = before + (rate - before) * (1 - math.exp(-span / self._smoothing))

    def known(self, partitions: Iterable[TopicPartition]) -> bool:
        """Whether every one of ``partitions`` has a rate."""
        return all(tp in self._rate for tp in partitions)

    def current(self) -> dict[TopicPartition, float]:
        return dict(self._rate)


class LoadAssignor:
    """aiokafka's assignor protocol (``name``, ``metadata``, ``assign``, ``on_assignment``),
    as an instance holding this sealer's rates and, while it leads the group, its plan.

    aiokafka calls ``metadata`` as each join begins, ``assign`` on the leader only, then
    ``on_assignment`` on every member once the group synced: a plan made by ``assign`` becomes
    :attr:`plan` at ``on_assignment``, and a member that did not make this generation's plan
    holds none (so only the leader watches the spread).
    """

    name = ASSIGNOR_NAME
    version = RoundRobinPartitionAssignor.version

    def __init__(self, rates: Rates, clock: Callable[[], float] = time.monotonic) -> None:
        self.rates = rates
        self.clock = clock
        self.plan: Plan | None = None
        # When the current plan was made, and whether every partition's rate was known then.
        self.planned_at = 0.0
        self.planned_blind = True
        self._made: tuple[Plan, float, bool] | None = None

    def metadata(self, topics: Iterable[str]) -> Any:
        # A plan made in a join whose sync failed must not outlive it.
        self._made = None
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), b"")

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
        topics = sorted({t for m in members.values() for t in m.subscription})
        if len({frozenset(m.subscription) for m in members.values()}) > 1:
            # Sealers of one deployment share one topic; anything else is dealt by count, as
            # the stock assignor does with members of different subscriptions.
            log.warning("subscriptions_differ", topics=topics)
            by_count: dict[str, Any] = RoundRobinPartitionAssignor.assign(cluster, members)
            return by_count
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(cluster.partitions_for_topic(t) or ())
        ]
        rates = self.rates.current()
        blind = not self.rates.known(partitions)
        plan = spread({tp: rates.get(tp, 0.0) for tp in partitions}, list(members))
        self._made = (plan, self.clock(), blind)
        loads = [round(sum(rates.get(tp, 0.0) for tp in parts)) for parts in plan.values()]
        log.info("partitions_spread", members=len(plan), blind=blind, loads=sorted(loads))
        return {
            member: ConsumerProtocolMemberAssignment(self.version, _by_topic(parts), b"")
            for member, parts in plan.items()
        }

    def on_assignment(self, assignment: Any) -> None:
        if self._made is None:
            self.plan = None
            return
        self.plan, self.planned_at, self.planned_blind = self._made
        self._made = None

    def due(self, interval: float) -> Unevenness | None:
        """The relief a rebalance would bring now, when this member leads the group, its
        plan is old enough (or was made blind) and the relief pays for the pause."""
        if self.plan is None or interval <= 0:
            return None
        partitions = [tp for parts in self.plan.values() for tp in parts]
        if not partitions or not self.rates.known(partitions):
            return None
        if not self.planned_blind and self.clock() - self.planned_at < interval:
            return None
        return uneven(self.plan, self.rates.current())


def _by_topic(parts: Sequence[TopicPartition]) -> list[tuple[str, list[int]]]:
    grouped: dict[str, list[int]] = {}
    for tp in parts:
        grouped.setdefault(tp.topic, []).append(tp.partition)
    return sorted(grouped.items())


async def balance(
    consumer: Any,
    assignor: LoadAssignor,
    topic: str,
    interval: float,
    stopping: asyncio.Event,
    every: float = SAMPLE_SECONDS,
) -> None:
    """Sample the topic's end offsets every ``every`` seconds until ``stopping``; while this
    sealer leads the group, ask for a rebalance when :meth:`LoadAssignor.due` says so."""
    while not await pause(stopping, every):
        try:
            await _turn(consumer, assignor, topic, interval)
        except (KafkaError, TimeoutError) as exc:
            log.warning("end_offsets_failed", error=type(exc).__name__)
        except Exception:  # spreading the load must never stop the sealer
            log.exception("balance_failed")


async def _turn(consumer: Any, assignor: LoadAssignor, topic: str, interval: float) -> None:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    async with asyncio.timeout(SAMPLE_TIMEOUT):
        ends = await consumer.end_offsets(tps)
    assignor.rates.observe(assignor.clock(), ends)
    relief = assignor.due(interval)
    if relief is None:
        return
    log.info(
        "rebalance_requested",
        busiest=round(relief.now),
        busiest_after=round(relief.best),
        rates={f"{tp.partition}": round(r) for tp, r in sorted(assignor.rates.current().items())},
    )
    REBALANCES.inc()
    # aiokafka has no public call for this (the Java client's enforceRebalance): its
    # coordinator's own, which its members use when metadata changes.
    consumer._coordinator.request_rejoin()
    # Until the new plan is made: do not ask twice for one rebalance.
    assignor.plan = None
