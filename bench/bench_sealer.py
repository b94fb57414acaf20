"""Sealer throughput from a pre-filled topic, and produce→sealed latency end to end.

    .venv/bin/python -m bench.bench_sealer [--events 200000] [--sealers 2] [--rate 20000]
        [--search-index trigram|none] [--hash-index hash|none]

Phase 1 fills a topic with `--events` canonical envelopes, then starts `--sealers` sealer
processes and times how long they take to seal everything. Phase 2 keeps the sealers running
while `--rate` events/s are published for `--seconds`, and reads each event's latency from the
database: the time its batch's checkpoint was written (``checkpoints.created_at`` is
``clock_timestamp()`` at insert, just before commit) minus its ``received_at`` (set by the
producer when the envelope was built). Phase 2 starts once the sealers' consumer group is
stable with every member, and ends with each sealer's event-loop lag (from its metrics
listener). At the end it checks that every event was sealed exactly once and that none went to
the dead-letter topic. ``--search-index none`` seals without the substring-search index, as
``auditlog search-index drop`` leaves a deployment, and ``--hash-index none`` without the
event-hash index (``auditlog hash-index drop``); ``--drop-index`` and ``--sql`` change the
scratch schema before sealing, to measure what an index (or an index option) costs.
Kafka, PostgreSQL, the producer and the sealers all share this machine's cores.

The events are published by ``bench/kafkaload`` (Go, franz-go), built with ``go build`` on first
use into ``.auditlog/cache/go/`` under a hash of its sources, so an edit rebuilds it. It sends
exactly the records the Python producer library would (same canonical envelope bytes, key and
producer settings; its Go test pins the bytes to vectors from ``auditlog.core.envelope``), but for a
few µs of CPU per event instead of ~25 µs: the Python producer cannot keep up with 30k events/s
here, and what it spends is taken from the sealers being measured. Without ``go`` on
PATH the bench says so and falls back to the Python producer library.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from auditlog.kafka.clients import dlq_topic
from auditlog.pg import hash_index, search_index
from auditlog.producer import AuditProducer
from bench import results
from bench.harness import Bench, CpuMeter, bench_stack, build_go_tool, free_port, percentile
from sealer.batcher import DEFAULT_BATCH_MAX_AGE
from sealer.settings import DEFAULT_GROUP_ID


def _fill_go(
    binary: Path, bench: Bench, n: int, tag: str, rate: float | None = None
) -> dict[str, Any]:
    """:func:`_fill` through ``bench/kafkaload``; returns what it reported, with ``rate`` the
    events/s achieved (until all acked)."""
    cmd = [str(binary), "-brokers", bench.kafka, "-topic", bench.topic, "-count", str(n),
           "-tag", tag, "-rate", str(rate or 0)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"kafkaload exited with {proc.returncode}: {proc.stdout.strip()} {proc.stderr.strip()}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    print(f"  kafkaload: {json.dumps(result)}")
    return result


async def _fill(bench: Bench, n: int, tag: str, rate: float | None = None) -> float:
    """Publish ``n`` events (paced at ``rate`` events/s when given); returns events/s achieved.

    Paced events go out in chunks every 10 ms, without waiting for the previous chunk's
    acknowledgement, so arrivals are spread as a population of producers would spread them.
    The fallback without ``go``: bench/kafkaload builds the same events (keep the two in step).
    """
    chunk = 1000 if rate is None else max(1, int(rate / 100))
    async with AuditProducer(bench.kafka, bench.topic, max_in_flight=50_000) as producer:
        began = time.perf_counter()
        async with asyncio.TaskGroup() as sends:
            for start in range(0, n, chunk):
                events = [
                    {
                        "message": f"{tag} {i}",
                        "actor": f"user-{i % 97}",
                        "action": "read",
                        "target": f"doc-{i % 1013}",
                        # Many tenants, as in a shared deployment: keys spread over partitions.
                        "tenant_id": f"tenant-{i % 500}",
                    }
                    for i in range(start, min(n, start + chunk))
                ]
                if rate is None:
                    await producer.log_many(events)
                    continue
                delay = began + start / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sends.create_task(producer.log_many(events))
        return n / (time.perf_counter() - began)


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        # The log heads, not count(*): counting a growing table ten times a second would take
        # a good part of a core from the sealers being measured.
        return int(await conn.fetchval("SELECT coalesce(sum(size), 0) FROM logs"))
    finally:
        await conn.close()


async def _wait(
    url: str, n: int, within: float, stall: float = 30, meter: CpuMeter | None = None
) -> float:
    """Seconds until ``n`` events are sealed. Gives up early when nothing was sealed for
    ``stall`` seconds: events that went to the dead-letter topic never will be."""
    began = progressed = time.perf_counter()
    last = -1
    while (count := await _count(url)) < n:
        if meter is not None:
            meter.sample()
        now = time.perf_counter()
        if count != last:
            last, progressed = count, now
        if now - began > within or now - progressed > stall:
            raise RuntimeError(f"only {count} of {n} sealed after {now - began:.0f}s")
        await asyncio.sleep(0.1)
    return time.perf_counter() - began


async def _steady(url: str) -> tuple[int, float]:
    """Events sealed between the first and the last checkpoint, and the seconds between them:
    the sealing rate without the processes' start-up and group join."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT extract(epoch FROM max(created_at) - min(created_at)) AS s,"
            " (SELECT coalesce(sum(size), 0) FROM logs) AS n FROM checkpoints"
        )
        first = await conn.fetchval(
            "SELECT coalesce(sum(size), 0) FROM checkpoints c WHERE created_at ="
            " (SELECT min(created_at) FROM checkpoints d WHERE d.log_id = c.log_id)"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]) - int(first), float(row["s"])


async def _dead_letters(bench: Bench) -> int:
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


async def _latencies(url: str, tag: str) -> list[tuple[float, float]]:
    """(seconds since the first event's received_at, produce→sealed seconds) per event.

    An event was sealed by the first checkpoint of its log whose size exceeds its index. Looked
    up here by bisection: a correlated subquery per event took PostgreSQL two minutes for three
    million events."""
    conn = await asyncpg.connect(url)
    try:
        events = await conn.fetch(
            "SELECT log_id, idx, extract(epoch FROM received_at)::float8 AS r FROM events"
            " WHERE message LIKE $1",
            f"{tag} %",
        )
        checkpoints = await conn.fetch(
            "SELECT log_id, size, extract(epoch FROM created_at)::float8 AS c FROM checkpoints"
            " ORDER BY log_id, size"
        )
    finally:
        await conn.close()
    sizes: dict[str, list[int]] = {}
    created: dict[str, list[float]] = {}
    for row in checkpoints:
        sizes.setdefault(row["log_id"], []).append(row["size"])
        created.setdefault(row["log_id"], []).append(row["c"])
    if not events:
        return []
    first = min(row["r"] for row in events)
    timed = []
    for log_id, index, received in events:
        sealed = created[log_id][bisect.bisect_right(sizes[log_id], index)]
        timed.append((received - first, sealed - received))
    return timed


def _by_window(timed: list[tuple[float, float]], width: float = 10.0) -> list[dict[str, float]]:
    """Latency of each ``width``-second window of arrivals: whether a long run held its pace."""
    by_window: dict[int, list[float]] = {}
    for t, s in timed:
        by_window.setdefault(int(t // width), []).append(s)
    return [
        {"from_s": k * width, "to_s": (k + 1) * width, **results.percentiles(v, 1000)}
        for k, v in sorted(by_window.items())
    ]


def _windows(timed: list[tuple[float, float]], width: float = 10.0) -> str:
    """p99 of each ``width``-second window of arrivals, as printed."""
    return ", ".join(
        f"{w['from_s']:.0f}-{w['to_s']:.0f} s: {w['p99']:.0f} ms" for w in _by_window(timed, width)
    )


async def _maintenance(url: str) -> dict[str, int]:
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


async def _diagnose(bench: Bench) -> str:
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


def _scrape(port: int) -> dict[str, float]:
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


def _phase_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Mean batch size, batch age and seal time over the phase, and how late the event loop
    woke its 20 ms watcher (``auditlog.runtime.stalls``): every record decoded and every row built
    runs on that loop, between the seals' round trips. Keys absent when there was nothing."""
    d = {k: v - before.get(k, 0.0) for k, v in after.items()}
    out: dict[str, Any] = {}
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
    collections = d.get("auditlog_gc_pause_seconds_count", 0.0)
    if collections:
        out["gc_collections"] = collections
        out["gc_pause_ms_total"] = d["auditlog_gc_pause_seconds_sum"] * 1000
    return out


def _phase_report(figures: dict[str, Any]) -> str:
    """:func:`_phase_figures`, as printed."""
    parts = []
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
    if "gc_collections" in figures:
        parts.append(
            f"cyclic GC {figures['gc_collections']:,.0f} collections,"
            f" {figures['gc_pause_ms_total']:,.0f} ms in all"
        )
    return "; ".join(parts) or "no batches and no event-loop ticks"


async def _group_settled(bench: Bench, members: int, within: float = 60) -> float:
    """Seconds until the sealers' consumer group is Stable with ``members`` members: a
    rebalance during the end-to-end phase (the last sealer joining late) would be measured as
    seconds of latency that a steady deployment does not have."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.kafka)
    await admin.start()
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < within:
            for response in await admin.describe_consumer_groups([DEFAULT_GROUP_ID]):
                for group in response.groups:
                    state, joined = group[2], group[5]
                    if state == "Stable" and len(joined) == members:
                        return time.perf_counter() - began
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise SystemExit(f"the sealers' group did not settle with {members} members in {within} s")


def _wait_or_report(bench: Bench, n: int, meter: CpuMeter | None = None) -> None:
    try:
        asyncio.run(_wait(bench.database_url, n, within=600, meter=meter))
    except RuntimeError:
        print(f"dead letters: {asyncio.run(_dead_letters(bench))}")
        raise


async def _drop_optional_indexes(url: str, search: bool, hashes: bool) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        if search:
            await search_index.drop(conn)
        if hashes:
            await hash_index.drop(conn)
        states = {
            "search_index": f"{await search_index.state(conn)}",
            "hash_index": f"{await hash_index.state(conn)}",
        }
        print(f"search index: {states['search_index']}, hash index: {states['hash_index']}")
    finally:
        await conn.close()
    return states


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sealers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--batch-age", type=float, default=DEFAULT_BATCH_MAX_AGE)
    parser.add_argument(
        "--search-index",
        choices=("trigram", "none"),
        default="trigram",
        help="seal with the substring-search index (as migrated) or without it (as after"
        " `auditlog search-index drop`)",
    )
    parser.add_argument(
        "--hash-index",
        choices=("hash", "none"),
        default="hash",
        help="seal with the event-hash index (as migrated) or without it (as after"
        " `auditlog hash-index drop`; receipts by hash then need received_at)",
    )
    parser.add_argument(
        "--log-level", default="warning", help="the sealers' (info logs one line per batch)"
    )
    parser.add_argument(
        "--drop-index",
        action="append",
        metavar="NAME",
        help="seal without this index of the migrated schema (what it costs; an experiment)",
    )
    parser.add_argument(
        "--sql",
        action="append",
        metavar="STATEMENT",
        help="run this on the scratch database before sealing (experiments: index options)",
    )
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    kafkaload = build_go_tool("kafkaload")
    if kafkaload is None:
        print(
            "go not found on PATH: producing with the Python producer library (aiokafka) instead"
            " of bench/kafkaload; it takes ~25 µs of CPU per event from the sealers' cores"
        )

    figures: dict[str, Any] = {"producer": "python" if kafkaload is None else "kafkaload"}
    fills: list[dict[str, Any]] = []

    def fill(bench: Bench, n: int, tag: str, rate: float | None = None) -> float:
        if kafkaload is None:
            achieved = asyncio.run(_fill(bench, n, tag, rate))
            fills.append({"tag": tag, "count": n, "rate": achieved})
            return achieved
        reported = _fill_go(kafkaload, bench, n, tag, rate)
        fills.append({"tag": tag, **reported})
        return float(reported["rate"])

    with bench_stack(Path(".auditlog/bench"), args.partitions) as bench:
        figures["indexes"] = asyncio.run(
            _drop_optional_indexes(
                bench.database_url, args.search_index == "none", args.hash_index == "none"
            )
        )
        for name in args.drop_index or ():
            asyncio.run(_execute(bench.database_url, f"DROP INDEX {name}"))
            print(f"sealing without index {name}")
        for statement in args.sql or ():
            asyncio.run(_execute(bench.database_url, statement))
            print(f"before sealing: {statement}")
        produced = fill(bench, args.events, "prefill")
        print(
            f"prefill: {args.events:,} events produced at {produced:,.0f} events/s "
            f"({args.partitions} partitions)"
        )
        meter = CpuMeter()
        meter.sample()
        began = time.perf_counter()
        metrics_ports = [free_port() for _ in range(args.sealers)]
        for port in metrics_ports:
            bench.spawn(
                "sealer",
                AUDITLOG_BATCH_MAX_SIZE=str(args.batch_size),
                AUDITLOG_BATCH_MAX_AGE=str(args.batch_age),
                AUDITLOG_LOG_LEVEL=args.log_level,
                AUDITLOG_SEALER_METRICS_PORT=str(port),
            )
        _wait_or_report(bench, args.events, meter)
        meter.sample()
        elapsed = time.perf_counter() - began
        print(
            f"sealer throughput: {args.events:,} events sealed in {elapsed:.1f} s = "
            f"{args.events / elapsed:,.0f} events/s with {args.sealers} sealer processes "
            "(including their start-up and group join)"
        )
        sealed, seconds = asyncio.run(_steady(bench.database_url))
        print(
            f"  steady: {sealed:,} events sealed between the first and the last checkpoint in "
            f"{seconds:.1f} s = {sealed / seconds:,.0f} events/s"
        )
        cpu = meter.seconds()
        figures["prefill"] = {"events": args.events, "events_per_s": produced}
        figures["full_topic"] = {
            "events": args.events,
            "seconds": elapsed,
            "events_per_s": args.events / elapsed,
            "steady_events": sealed,
            "steady_seconds": seconds,
            "steady_events_per_s": sealed / seconds if seconds else None,
            "cpu_s": cpu,
            "cpu_us_per_event": {g: c / args.events * 1e6 for g, c in cpu.items()},
        }
        print(
            f"  CPU while sealing the full topic, over {elapsed:.1f} s on {os.cpu_count()} cores: "
            + ", ".join(
                f"{group} {cpu.get(group, 0.0):.1f} s"
                f" ({cpu.get(group, 0.0) / args.events * 1e6:.1f} µs/event)"
                for group in ("sealer", "postgres", "kafka")
            )
        )

        waited = asyncio.run(_group_settled(bench, args.sealers))
        print(f"  consumer group stable with {args.sealers} members ({waited:.1f} s more)")
        figures["group_settled_s"] = waited
        before = [_scrape(port) for port in metrics_ports]
        total = args.events + int(args.rate * args.seconds)
        live = CpuMeter()
        with live.sampling():
            achieved = fill(bench, int(args.rate * args.seconds), "live", args.rate)
            _wait_or_report(bench, total)
        timed = asyncio.run(_latencies(bench.database_url, "live"))
        lat = [s for _, s in timed]
        print(
            f"end to end at {achieved:,.0f} events/s offered for {args.seconds:.0f} s: "
            f"produce→sealed p50 {percentile(lat, 50) * 1000:.0f} ms, "
            f"p99 {percentile(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms "
            f"({len(lat):,} events)"
        )
        if args.seconds > 10:
            print(f"  p99 by arrival time: {_windows(timed)}")
        maintenance = asyncio.run(_maintenance(bench.database_url))
        print(
            f"  autovacuum ran {maintenance['autovacuums']} vacuums and"
            f" {maintenance['autoanalyzes']} analyzes of events partitions (both phases)"
        )
        cpu = live.seconds()
        print(
            "  CPU per live event: "
            + ", ".join(
                f"{group} {cpu.get(group, 0.0) / len(lat) * 1e6:.1f} µs"
                for group in ("sealer", "postgres", "kafka", "load generator")
            )
        )
        sealers = []
        for port, scraped in zip(metrics_ports, before, strict=True):
            phase = _phase_figures(scraped, _scrape(port))
            sealers.append(phase)
            print(f"  sealer on :{port}: {_phase_report(phase)}")
        figures["live"] = {
            "offered_events_per_s": args.rate,
            "achieved_events_per_s": achieved,
            "seconds": args.seconds,
            "events": len(lat),
            "latency_ms": results.percentiles(lat, 1000),
            "windows_10s": _by_window(timed),
            "cpu_s": cpu,
            "cpu_us_per_event": {g: c / max(len(lat), 1) * 1e6 for g, c in cpu.items()},
            "sealers": sealers,
        }
        figures["autovacuum_both_phases"] = maintenance
        figures["fills"] = fills
        # More than produced would be duplicates; dead letters would be envelopes the sealer
        # did not accept as canonical, i.e. a producer that does not send what it should.
        sealed = asyncio.run(_count(bench.database_url))
        dead = asyncio.run(_dead_letters(bench))
        print(f"check: {sealed:,} events sealed of {total:,} produced, {dead} dead letters")
        figures["check"] = {"sealed": sealed, "produced": total, "dead_letters": dead}
        if sealed != total or dead:
            diagnosis = asyncio.run(_diagnose(bench))
            print(f"  {diagnosis}")
            figures["check"]["diagnosis"] = diagnosis
            path = results.write(
                "bench_sealer", started, vars(args), figures, args.results_dir,
                status="check failed",
            )  # fmt: skip
            print(f"result: {path}")
            raise SystemExit("check failed: sealed count differs from produced, or dead letters")
    path = results.write("bench_sealer", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
