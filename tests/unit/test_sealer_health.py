"""The sealer's readiness, liveness and per-log gauges, judged on a clock the test moves."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from auditlog.runtime.listener import Verdict
from sealer.health import LOOP_STALL_SECONDS, CheckpointAge, SealerHealth


class Clocks:
    """A monotonic and a wall clock that move only when told to."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_800_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def _health(clocks: Clocks, max_seal_age: float = 60.0) -> SealerHealth:
    return SealerHealth(max_seal_age, clock=lambda: clocks.mono, wall_clock=lambda: clocks.wall)


def _sample(name: str, log: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"log": log})


TP0, TP1 = TopicPartition("health.test", 0), TopicPartition("health.test", 1)
LOG0, LOG1 = "health.test-0", "health.test-1"


def test_not_ready_before_owning_a_partition_then_ready() -> None:
    clocks = Clocks()
    health = _health(clocks)
    assert health.readyz().ok is False and "no partition" in health.readyz().reason
    assert health.publish().reason == "owns no partition"
    health.assigned(TP0, LOG0, 5, clocks.wall - 100)
    verdict = health.publish()
    assert verdict.ok and health.readyz() == verdict
    assert REGISTRY.get_sample_value("auditlog_sealer_owned_partitions") == 1.0
    health.revoked(TP0)
    health.publish()


def test_records_waiting_past_the_bound_without_a_seal_make_it_unready() -> None:
    clocks = Clocks()
    health = _health(clocks, max_seal_age=30)
    health.assigned(TP0, LOG0, 0, None)
    health.assigned(TP1, LOG1, 0, None)
    health.observe(TP0, 10, waiting=True)
    health.observe(TP1, 0, waiting=False)
    clocks.advance(29)
    assert health.publish().ok
    clocks.advance(2)
    verdict = health.publish()
    assert not verdict.ok and verdict.reason.endswith(LOG0) and "30 s" in verdict.reason
    assert _sample("auditlog_sealer_lag_records", LOG0) == 10.0
    # A seal is progress: fresh again, for another 30 s.
    health.sealed(TP0, LOG0, 200, 3)
    assert health.publish().ok
    assert _sample("auditlog_sealer_lag_records", LOG0) == 3.0
    assert _sample("auditlog_sealer_log_entries", LOG0) == 200.0
    clocks.advance(31)
    assert not health.publish().ok
    # Caught up (nothing waits): fresh, however old the last seal is.
    health.observe(TP0, 0, waiting=False)
    assert health.publish().ok
    clocks.advance(3600)
    health.observe(TP0, 0, waiting=False)
    health.observe(TP1, 0, waiting=False)
    assert health.publish().ok
    for tp in (TP0, TP1):
        health.revoked(tp)


def test_last_seal_and_checkpoint_age_follow_the_owned_logs_only() -> None:
    clocks = Clocks()
    health = _health(clocks)
    health.assigned(TP0, LOG0, 7, clocks.wall - 40)
    assert _sample("auditlog_sealer_last_seal_timestamp_seconds", LOG0) == clocks.wall - 40
    assert _sample("auditlog_sealer_log_entries", LOG0) == 7.0
    age = CheckpointAge(clock=lambda: clocks.wall)
    [family] = list(age.collect())
    ages = {s.labels["log"]: s.value for s in family.samples}
    assert ages[LOG0] == 40.0
    clocks.advance(5)
    health.sealed(TP0, LOG0, 9, 0)
    clocks.advance(2)
    [family] = list(age.collect())
    assert {s.labels["log"]: s.value for s in family.samples}[LOG0] == 2.0
    # The registered collector computes it at scrape time, against the real clock.
    assert _sample("auditlog_sealer_checkpoint_age_seconds", LOG0) is not None
    # Revoked: every series of the log goes, so no stale lag or growing age is left behind.
    health.revoked(TP0)
    for name in (
        "auditlog_sealer_last_seal_timestamp_seconds",
        "auditlog_sealer_checkpoint_age_seconds",
        "auditlog_sealer_log_entries",
        "auditlog_sealer_lag_records",
    ):
        assert _sample(name, LOG0) is None, name
    health.revoked(TP0)  # twice is harmless
    health.observe(TP0, 5, waiting=True)  # a look at a partition no longer owned: ignored
    assert _sample("auditlog_sealer_lag_records", LOG0) is None


def test_a_log_assigned_without_a_stored_seal_time_starts_its_age_now() -> None:
    clocks = Clocks()
    health = _health(clocks)
    health.assigned(TP1, LOG1, 0, None)
    assert _sample("auditlog_sealer_last_seal_timestamp_seconds", LOG1) == clocks.wall
    health.revoked(TP1)


def test_alive_while_the_loop_publishes_dead_when_it_stops() -> None:
    clocks = Clocks()
    health = _health(clocks)
    assert health.healthz().ok  # starting: the watch loop has not run yet
    health.publish()
    clocks.advance(LOOP_STALL_SECONDS)
    assert health.healthz().ok
    clocks.advance(1)
    verdict = health.healthz()
    assert not verdict.ok and "event loop silent for 31 s" in verdict.reason
    health.publish()
    assert health.healthz().ok
    # Stopping: not ready at once, and alive however long the last seals take.
    assert health.publish(stopping=True).reason == "stopping"
    clocks.advance(10 * LOOP_STALL_SECONDS)
    assert health.healthz().ok and not health.readyz().ok


async def test_the_watch_loop_judges_every_owned_partition_and_says_when_it_stops() -> None:
    # A real consumer, never started: it holds no partition and knows no topic, so the lag is
    # unknown and only the records the worker holds (busy) can make a partition wait.
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    clocks = Clocks()
    health = _health(clocks, max_seal_age=5)
    health.assigned(TP0, LOG0, 0, None)
    heads = {TP0: object()}
    stopping = asyncio.Event()
    busy = {TP0: True}
    watch = asyncio.create_task(
        health.watch(consumer, heads, lambda tp: 0, busy.__getitem__, "health.test", stopping, 0.01)
    )
    try:
        await asyncio.sleep(0.05)
        assert health.readyz().ok and health.healthz().ok
        clocks.advance(6)
        await asyncio.sleep(0.05)
        assert health.readyz() == Verdict(False, f"records wait unsealed for over 5 s: {LOG0}")
        busy[TP0] = False  # the worker sealed what it held
        await asyncio.sleep(0.05)
        assert health.readyz().ok
        stopping.set()
        await asyncio.wait_for(watch, 5)
        assert health.readyz().reason == "stopping"
    finally:
        watch.cancel()
        health.revoked(TP0)
        await consumer.stop()
