"""The sealer's health, readiness and per-log gauges, for its metrics listener.

The event loop owns the state: the worker reports assignments, seals and revocations, and
:meth:`SealerHealth.watch` looks at every owned partition once a second (its lag, whether
records wait for it) and publishes a verdict. The listener's thread only reads what was
published, so a probe never touches the loop: a loop stuck for ``LOOP_STALL_SECONDS`` is
unhealthy precisely because it stopped publishing.

Ready means: the sealer owns partitions, and no owned partition has had records waiting for
longer than ``max_seal_age`` seconds without a seal. A partition that is caught up is fresh
however old its last seal, so an idle log never makes a sealer unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from prometheus_client import REGISTRY, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from auditlog.runtime.eventloop import pause
from auditlog.runtime.listener import Verdict

log = structlog.get_logger("sealer")

LOG_ENTRIES = Gauge("auditlog_sealer_log_entries", "Entries in each owned log", ["log"])
LAG = Gauge("auditlog_sealer_lag_records", "Records behind the partition's high watermark", ["log"])
LAST_SEAL = Gauge(
    "auditlog_sealer_last_seal_timestamp_seconds",
    "Unix time of the last committed seal of each owned log",
    ["log"],
)
OWNED = Gauge("auditlog_sealer_owned_partitions", "Partitions of the topic this sealer owns")
TOPIC_PARTITIONS = Gauge(
    "auditlog_sealer_topic_partitions", "Partitions of the events topic, as this sealer sees it"
)

DEFAULT_MAX_SEAL_AGE = 60.0
LOOP_STALL_SECONDS = 30.0  # the loop published nothing for this long: unhealthy
WATCH_INTERVAL = 1.0
_POSITION_TIMEOUT = 1.0


class CheckpointAge(Collector):
    """``auditlog_sealer_checkpoint_age_seconds{log}``: now minus the last seal, at scrape time,
    for exactly the logs :data:`LAST_SEAL` reports (the owned ones)."""

    NAME = "auditlog_sealer_checkpoint_age_seconds"
    HELP = "Seconds since the last committed seal of each owned log"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["log"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["log"])
        now = self.clock()
        for metric in LAST_SEAL.collect():
            for sample in metric.samples:
                family.add_metric([sample.labels["log"]], max(0.0, now - sample.value))
        yield family


REGISTRY.register(CheckpointAge())


@dataclass(slots=True)
class _Owned:
    log_id: str
    fresh_at: float  # monotonic: assigned, sealed, or last seen with nothing waiting
    waiting: bool = False


class SealerHealth:
    """What the listener answers on ``/healthz`` and ``/readyz`` (see the module docstring)."""

    def __init__(
        self,
        max_seal_age: float = DEFAULT_MAX_SEAL_AGE,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_seal_age = max_seal_age
        self.clock = clock
        self.wall_clock = wall_clock
        self._owned: dict[TopicPartition, _Owned] = {}
        self._beat: float | None = None  # the watch loop's last round; None: not started
        self._ready = Verdict(False, "starting: no partition assigned yet")

    # -- reported by the worker, on the event loop -------------------------------------------
    def assigned(
        self, tp: TopicPartition, log_id: str, entries: int, sealed_at: float | None
    ) -> None:
        """``sealed_at``: unix time of the log's last stored seal (None: not known)."""
        self._owned[tp] = _Owned(log_id, self.clock())
        LOG_ENTRIES.labels(log_id).set(entries)
        LAST_SEAL.labels(log_id).set(self.wall_clock() if sealed_at is None else sealed_at)

    def sealed(self, tp: TopicPartition, log_id: str, entries: int, lag: int | None) -> None:
        owned = self._owned.get(tp)
        if owned is not None:
            owned.fresh_at = self.clock()
        LOG_ENTRIES.labels(log_id).set(entries)
        LAST_SEAL.labels(log_id).set(self.wall_clock())
        if lag is not None:
            LAG.labels(log_id).set(lag)

    def revoked(self, tp: TopicPartition) -> None:
        # Another sealer reports this log now: a series left behind here would hold a stale
        # lag and a growing checkpoint age for a log that is sealed elsewhere.
        owned = self._owned.pop(tp, None)
        if owned is None:
            return
        for gauge in (LOG_ENTRIES, LAG, LAST_SEAL):
            with contextlib.suppress(KeyError):
                gauge.remove(owned.log_id)

    def observe(self, tp: TopicPartition, lag: int | None, waiting: bool) -> None:
        """One look at an owned partition: its lag (None: unknown yet), and whether records
        wait for it (unread below the high watermark, or read and not yet sealed)."""
        owned = self._owned.get(tp)
        if owned is None:
            return
        if lag is not None:
            LAG.labels(owned.log_id).set(lag)
        if not waiting:
            owned.fresh_at = self.clock()
        owned.waiting = waiting

    def publish(self, stopping: bool = False) -> Verdict:
        """Judge readiness now and publish it (and a heartbeat) for the listener's thread."""
        now = self.clock()
        OWNED.set(len(self._owned))
        if stopping:
            verdict = Verdict(False, "stopping")
        elif not self._owned:
            verdict = Verdict(False, "owns no partition")
        else:
            stale = sorted(
                o.log_id
                for o in self._owned.values()
                if o.waiting and now - o.fresh_at > self.max_seal_age
            )
            verdict = (
                Verdict(False, f"records wait unsealed for over {self.max_seal_age:g} s: "
                        + ", ".join(stale))
                if stale
                else Verdict(True, f"ready: {len(self._owned)} partitions")
            )  # fmt: skip
        self._ready = verdict
        # Stopping, the loop finishes its seals and ends: no more heartbeats to expect.
        self._beat = None if stopping else now
        return verdict

    # -- read by the listener's thread --------------------------------------------------------
    def healthz(self) -> Verdict:
        if self._beat is None:
            return Verdict(True, "alive: starting or stopping")
        silent = self.clock() - self._beat
        if silent > LOOP_STALL_SECONDS:
            return Verdict(False, f"event loop silent for {silent:.0f} s")
        return Verdict(True, "alive")

    def readyz(self) -> Verdict:
        return self._ready

    # -- the loop that keeps it current --------------------------------------------------------
    async def watch(
        self,
        consumer: AIOKafkaConsumer,
        heads: Mapping[TopicPartition, object],
        next_offset: Callable[[TopicPartition], int | None],
        busy: Callable[[TopicPartition], bool],
        topic: str,
        stopping: asyncio.Event,
        interval: float = WATCH_INTERVAL,
    ) -> None:
        """Every ``interval`` seconds until ``stopping``: each owned partition's lag and
        waiting records, the topic's partition count, and a published verdict."""
        while not stopping.is_set():
            try:
                for tp in list(heads):
                    lag, waiting = await _look(consumer, tp, next_offset(tp), busy(tp))
                    self.observe(tp, lag, waiting)
                partitions = consumer.partitions_for_topic(topic)
                if partitions is not None:
                    TOPIC_PARTITIONS.set(len(partitions))
                self.publish()
            except Exception:  # watching must never stop the sealer
                # Nothing is published: should this repeat, /healthz turns 503 after
                # LOOP_STALL_SECONDS and the sealer is restarted.
                log.exception("health_watch_failed")
            await pause(stopping, interval)
        self.publish(stopping=True)


async def _look(
    consumer: AIOKafkaConsumer, tp: TopicPartition, next_offset: int | None, busy: bool
) -> tuple[int | None, bool]:
    """(lag, waiting) of an owned partition; a partition being revoked reads as neither."""
    if tp not in consumer.assignment():
        return None, busy
    highwater = consumer.highwater(tp)
    if highwater is None or next_offset is None:
        return None, busy  # nothing fetched yet: the lag is unknown
    lag = max(0, highwater - next_offset)
    if busy or lag == 0:
        return lag, busy
    # Lag with nothing buffered: records wait if the consumer has not read up to the high
    # watermark (the lag alone would also count transaction markers, which are never sealed).
    try:
        async with asyncio.timeout(_POSITION_TIMEOUT):
            position = await consumer.position(tp)
    except (IllegalStateError, KafkaError, TimeoutError):
        return lag, True
    return lag, position < highwater
