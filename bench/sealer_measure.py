"""What bench_sealer reads back: counts, latencies and dead letters from the database and
Kafka, and the sealers' own metrics scraped from their listeners, with the reports printed.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import urllib.request
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from auditlog.kafka.clients import dlq_topic
from bench import results
from bench.harness import Bench, CpuMeter


async def count_events(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        # The log heads, not count(*): counting a growing table ten times a second would take
        # a good part of a core from the sealers being measured.
        return int(await conn.fetchval("SELECT coalesce(sum(size), 0) FROM logs"))
    finally:
        await conn.close()


async def wait_sealed(
    url: str, n: int, within: float, stall: float = 30, meter: CpuMeter | None = None
) -> float:
    """Seconds until ``n`` events are sealed. Gives up early when nothing was sealed for
    ``stall`` seconds: events that went to the dead-letter topic never will be."""
    began = progressed = time.perf_counter()
    last = -1
    while (count := await count_events(url)) < n:
        if meter is not None:
            meter.sample()
        now = time.perf_counter()
        if count != last:
            last, progressed = count, now
        if now - began > within or now - progressed > stall:
            raise RuntimeError(f"only {count} of {n} sealed after {now - began:.0f}s")
        await asyncio.sleep(0.1)
    return time.perf_counter() - began


async def steady_rate(url: str) -> tuple[int, float]:
    """Events sealed between the first and the last checkpoint, and the seconds between them:
    the sealing rate without the processes' start-up and group join. A log's birth checkpoint
    (size 0, signed when the sealer first loads it) is start-up, not sealing: left out."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM max(created_at) - min(created_at)) AS s,"
            " (SELECT coalesce(sum(size), 0) FROM logs) AS n FROM checkpoints WHERE size > 0"
        )
        first = await conn.fetchval(
            "SELECT coalesce(sum(size), 0) FROM checkpoints c WHERE size > 0 AND created_at ="
            " (SELECT min(created_at) FROM checkpoints d WHERE d.log_id = c.log_id AND size > 0)"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]) - int(first), float(row["s"])


async def dead_letters(bench: Bench) -> int:
    """Records in the dead-letter topic: any would mean the sealer rejected what was produced."""
    topic = dlq_topic(bench.topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.kafka)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    if described["error_code"] or not tps:
        raise RuntimeError(f"dead-letter topic {topic} not found: {described}")
    consumer = AIOKafkaConsumer(bootstrap_servers=bench.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    return sum(ends[tp] - starts[tp] for tp in tps)


class SealTimes:
    """When each entry was sealed: the ``created_at`` (epoch seconds) of the first checkpoint of
    its log whose size exceeds its index, looked up by bisection (a correlated subquery per
    event took PostgreSQL two minutes for three million events)."""

    def __init__(self, checkpoints: list[asyncpg.Record]) -> None:
        self.sizes: dict[str, list[int]] = {}
        self.created: dict[str, list[float]] = {}
        for row in checkpoints:
            self.sizes.setdefault(row["log_id"], []).append(row["size"])
            self.created.setdefault(row["log_id"], []).append(row["c"])

    @classmethod
    async def read(cls, conn: asyncpg.Connection) -> SealTimes:
        return cls(
            await conn.fetch(
                "SELECT log_id, size, extract(epoch FROM created_at)::float8 AS c"
                " FROM checkpoints ORDER BY log_id, size"
            )
        )

    def __call__(self, log_id: str, index: int) -> float:
        return self.created[log_id][bisect.bisect_right(self.sizes[log_id], index)]


async def latencies(url: str, tag: str) -> list[tuple[float, float]]:
    """(seconds since the first event's received_at, produce→sealed seconds) per event."""
    conn = await asyncpg.connect(url)
    try:
        events = await conn.fetch(
            "SELECT log_id, idx, extract(epoch FROM received_at)::float8 AS r FROM events"
            " WHERE message LIKE $1",
            f"{tag} %",
        )
        sealed = await SealTimes.read(conn)
    finally:
        await conn.close()
    if not events:
        return []
    first = min(row["r"] for row in events)
    return [
        (received - first, sealed(log_id, index) - received) for log_id, index, received in events
    ]


def by_window(timed: list[tuple[float, float]], width: float = 10.0) -> list[dict[str, float]]:
    """Latency of each ``width``-second window of arrivals: whether a long run held its pace."""
    by_window: dict[int, list[float]] = {}
    for t, s in timed:
        by_window.setdefault(int(t // width), []).append(s)
    return [
        {"from_s": k * width, "to_s": (k + 1) * width, **results.percentiles(v, 1000)}
        for k, v in sorted(by_window.items())
    ]


def windows_report(timed: list[tuple[float, float]], width: float = 10.0) -> str:
    """p99 of each ``width``-second window of arrivals, as printed."""
    return ", ".join(
        f"{w['from_s']:.0f}-{w['to_s']:.0f} s: {w['p99']:.0f} ms" for w in by_window(timed, width)
    )


async def maintenance(url: str) -> dict[str, int]:
    """What autovacuum did to the events partitions: its work competes with the seals."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT coalesce(sum(autovacuum_count), 0) AS v, coalesce(sum(autoanalyze_count), 0)"
            " AS a FROM pg_stat_user_tables WHERE relname LIKE 'events%'"
        )
    finally:
        await conn.close()
    assert row is not None
    return {"autovacuums": int(row["v"]), "autoanalyzes": int(row["a"])}


async def diagnose(bench: Bench) -> str:
    """Where extra events came from, when more were sealed than produced: the same Kafka offset
    sealed twice (a sealer bug) or the same event at two offsets (a producer that retried)."""
    conn = await asyncpg.connect(bench.database_url)
    try:
        offsets = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM events GROUP BY log_id, kafka_offset"
            " HAVING count(*) > 1) d"
        )
        messages = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM events GROUP BY message HAVING count(*) > 1) d"
        )
        logs = await conn.fetch("SELECT log_id, size, next_offset FROM logs ORDER BY log_id")
    finally:
        await conn.close()
    heads = ", ".join(f"{r['log_id']} size {r['size']} next {r['next_offset']}" for r in logs)
    return (
        f"offsets sealed more than once: {offsets}; messages sealed more than once: {messages};"
        f" logs: {heads}"
    )


def scrape(port: int) -> dict[str, float]:
    """The sealer's metrics that say where phase 2's latency goes, as sample name -> value
    (histogram buckets keyed ``name{le}``), summed over label sets."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(
            ("auditlog_event_loop_lag_seconds", "auditlog_sealer_", "auditlog_gc_pause_seconds")
        ):
            continue
        name, value = line.rsplit(" ", 1)
        if "_bucket{" in name:
            name = name.split("{", 1)[0] + "{" + name.split('le="', 1)[1].split('"', 1)[0] + "}"
        else:
            name = name.split("{", 1)[0]
        samples[name] = samples.get(name, 0.0) + float(value)
    return samples


def phase_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Mean batch size, batch age and seal time over the phase, and how late the event loop
    woke its 20 ms watcher (``auditlog.runtime.stalls``): every record decoded and every row built
    runs on that loop, between the seals' round trips. Keys absent when there was nothing."""
    d = {k: v - before.get(k, 0.0) for k, v in after.items()}
    out: dict[str, Any] = {}
    # Each sealer's share of the events: how evenly the group spread the partitions' load.
    events = d.get("auditlog_sealer_events_total", 0.0)
    if events:
        out["events"] = events
    batches = d.get("auditlog_sealer_seal_seconds_count", 0.0)
    if batches:
        out["batches"] = batches
        out["batch_events_mean"] = d["auditlog_sealer_batch_events_sum"] / batches
        out["batch_age_ms_mean"] = d["auditlog_sealer_batch_age_seconds_sum"] / batches * 1000
        out["seal_ms_mean"] = d["auditlog_sealer_seal_seconds_sum"] / batches * 1000
        out["seal_wait_ms_mean"] = (
            d.get("auditlog_sealer_seal_wait_seconds_sum", 0.0) / batches * 1000
        )
    ticks = d.get("auditlog_event_loop_lag_seconds_bucket{+Inf}", 0.0)
    if ticks:
        out["event_loop_ticks"] = ticks
        out["event_loop_late_percent"] = {
            f">={float(b) * 1000:g}ms": 100 * (ticks - d[key]) / ticks
            for b in ("0.005", "0.01", "0.025", "0.05", "0.1")
            if (key := f"auditlog_event_loop_lag_seconds_bucket{{{b}}}") in d
        }
    # A seal fenced off means another sealer took the partition over mid-batch (a rebalance):
    # the batch is read and decoded again.
    fenced = d.get("auditlog_sealer_fenced_total", 0.0)
    if fenced:
        out["fenced"] = fenced
    rebalances = d.get("auditlog_sealer_rebalances_requested_total", 0.0)
    if rebalances:
        out["rebalances_requested"] = rebalances
    collections = d.get("auditlog_gc_pause_seconds_count", 0.0)
    if collections:
        out["gc_collections"] = collections
        out["gc_pause_ms_total"] = d["auditlog_gc_pause_seconds_sum"] * 1000
    return out


def phase_report(figures: dict[str, Any]) -> str:
    """:func:`phase_figures`, as printed."""
    parts = []
    if "events" in figures:
        parts.append(f"{figures['events']:,.0f} events sealed")
    if "batches" in figures:
        parts.append(
            f"{figures['batches']:,.0f} batches of {figures['batch_events_mean']:,.0f} events,"
            f" {figures['batch_age_ms_mean']:.0f} ms from first record"
            f" fetched to sealed, of which waiting for a slot and the"
            f" partition's previous seal {figures['seal_wait_ms_mean']:.0f} ms,"
            f" the seal itself {figures['seal_ms_mean']:.0f} ms (means)"
        )
    if "event_loop_ticks" in figures:
        late = ", ".join(
            f"≥ {bucket[2:-2]} ms {percent:.1f} %"
            for bucket, percent in figures["event_loop_late_percent"].items()
        )
        parts.append(f"event loop late (of {figures['event_loop_ticks']:,.0f} ticks): {late}")
    if "fenced" in figures:
        parts.append(f"{figures['fenced']:,.0f} seals fenced off")
    if "rebalances_requested" in figures:
        parts.append(f"{figures['rebalances_requested']:,.0f} rebalances asked for")
    if "gc_collections" in figures:
        parts.append(
            f"cyclic GC {figures['gc_collections']:,.0f} collections,"
            f" {figures['gc_pause_ms_total']:,.0f} ms in all"
        )
    return "; ".join(parts) or "no batches and no event-loop ticks"
