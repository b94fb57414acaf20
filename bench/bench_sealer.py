"""Sealer throughput from a pre-filled topic, and produce→sealed latency end to end.

    .venv/bin/python -m bench.bench_sealer [--events 200000] [--sealers 2] [--rate 20000]
        [--search-index blocks|trigram] [--hash-index hash|none]
        [--batch-age S] [--batch-min-interval S] [--search-merge-interval S] [--warm-up 15]
        [--rebalance-interval S]

Phase 1 fills a topic with `--events` canonical envelopes, then starts `--sealers` sealer
processes and times how long they take to seal everything. Phase 2 keeps the sealers running
while `--rate` events/s are published for `--seconds` (after ``--warm-up`` seconds of 2,000
events/s, unmeasured: Kafka's JVM compiles its produce path in its first seconds under load, which
a freshly started stack's first live phase would otherwise pay for, at 2-3x the CPU per event),
and reads each event's latency from the
database: the time its batch's checkpoint was written (``checkpoints.created_at`` is
``clock_timestamp()`` at insert, just before commit) minus its ``received_at`` (set by the
producer when the envelope was built). Phase 2 starts once the sealers' consumer group is
stable with every member, and ends with each sealer's event-loop lag (from its metrics
listener). At the end it checks that every event was sealed exactly once and that none went to
the dead-letter topic. The sealers write search blocks, as always; ``--search-index trigram``
adds the optional trigram index (``auditlog search-index create``), and ``--hash-index none``
seals without the event-hash index (``auditlog hash-index drop``); ``--drop-index`` and
``--sql`` change the scratch schema before sealing, to measure what an index (or an index
option) costs. The sealers' batching and search-index merging are their defaults unless
``--batch-age``, ``--batch-min-interval`` or ``--search-merge-interval`` say otherwise (0 for
the last: the seals merge the index's pending list themselves, as before sealer/index_merge.py).
Kafka, PostgreSQL, the producer and the sealers all share this machine's cores.

The events are realistic (``auditlog/loadtest/events.py``, written to a corpus file by
``bench/corpus.py``; ``--event-kind templated`` for the best case of earlier runs), each with
``"<tag> <i> "`` before its message so that the phases find their own events.
They are published by ``bench/kafkaload`` (Go, franz-go), built with ``go build`` on first
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
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Final

import asyncpg

from auditlog.loadtest.events import EventGenerator
from auditlog.pg import hash_index, search_index
from auditlog.producer import AuditProducer
from bench import results
from bench.corpus import write_corpus
from bench.harness import (
    Bench,
    CpuMeter,
    bench_stack,
    build_go_tool,
    free_port,
    group_settled,
    percentile,
    postgres_settings,
)
from bench.sealer_measure import (
    by_window,
    count_events,
    dead_letters,
    diagnose,
    latencies,
    maintenance,
    phase_figures,
    phase_report,
    scrape,
    steady_rate,
    wait_sealed,
    windows_report,
)
from sealer.assignment import DEFAULT_REBALANCE_INTERVAL
from sealer.batcher import DEFAULT_BATCH_MAX_AGE, DEFAULT_BATCH_MIN_INTERVAL
from sealer.index_merge import DEFAULT_INTERVAL as DEFAULT_SEARCH_MERGE_INTERVAL

# The warm-up's rate: bench_race's, enough for Kafka's JVM to compile its produce path.
WARM_UP_RATE: Final = 2000


def _fill_go(
    binary: Path,
    bench: Bench,
    n: int,
    tag: str,
    rate: float | None = None,
    corpus: Path | None = None,
) -> dict[str, Any]:
    """:func:`_fill` through ``bench/kafkaload``; returns what it reported, with ``rate`` the
    events/s achieved (until all acked). ``corpus``: realistic events (bench/corpus.py)."""
    cmd = [str(binary), "-brokers", bench.kafka, "-topic", bench.topic, "-count", str(n),
           "-tag", tag, "-rate", str(rate or 0)]  # fmt: skip
    if corpus is not None:
        cmd += ["-events", str(corpus)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"kafkaload exited with {proc.returncode}: {proc.stdout.strip()} {proc.stderr.strip()}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    print(f"  kafkaload: {json.dumps(result)}")
    return result


def _events(
    tag: str, start: int, stop: int, generator: EventGenerator | None
) -> list[dict[str, Any]]:
    """Events ``start..stop-1`` as kafkaload makes them: realistic ones with ``"<tag> <i> "``
    before their message, or the templated ones."""
    if generator is not None:
        return [
            {**event, "message": f"{tag} {i} {event['message']}"}
            for i, event in zip(range(start, stop), generator, strict=False)
        ]
    return [
        {
            "message": f"{tag} {i}",
            "actor": f"user-{i % 97}",
            "action": "read",
            "target": f"doc-{i % 1013}",
            # Many tenants, as in a shared deployment: keys spread over partitions.
            "tenant_id": f"tenant-{i % 500}",
        }
        for i in range(start, stop)
    ]


async def _fill(
    bench: Bench, n: int, tag: str, rate: float | None = None, realistic: bool = False
) -> float:
    """Publish ``n`` events (paced at ``rate`` events/s when given); returns events/s achieved.

    Paced events go out in chunks every 10 ms, without waiting for the previous chunk's
    acknowledgement, so arrivals are spread as a population of producers would spread them.
    The fallback without ``go``: bench/kafkaload builds the same events (keep the two in step).
    """
    chunk = 1000 if rate is None else max(1, int(rate / 100))
    generator = EventGenerator(1) if realistic else None
    async with AuditProducer(bench.kafka, bench.topic, max_in_flight=50_000) as producer:
        began = time.perf_counter()
        async with asyncio.TaskGroup() as sends:
            for start in range(0, n, chunk):
                events = _events(tag, start, min(n, start + chunk), generator)
                if rate is None:
                    await producer.log_many(events)
                    continue
                delay = began + start / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sends.create_task(producer.log_many(events))
        return n / (time.perf_counter() - began)


def _wait_or_report(bench: Bench, n: int, meter: CpuMeter | None = None) -> None:
    try:
        asyncio.run(wait_sealed(bench.database_url, n, within=600, meter=meter))
    except RuntimeError:
        print(f"dead letters: {asyncio.run(dead_letters(bench))}")
        raise


async def _optional_indexes(url: str, trigram: bool, hashes: bool) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        if trigram:
            await search_index.create(conn, lambda _: None)
        if hashes:
            await hash_index.drop(conn)
        states = {
            "search_index": f"{await search_index.state(conn)}",
            "hash_index": f"{await hash_index.state(conn)}",
        }
        print(f"trigram index: {states['search_index']}, hash index: {states['hash_index']}")
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
        "--batch-min-interval",
        type=float,
        default=DEFAULT_BATCH_MIN_INTERVAL,
        help="the sealers' AUDITLOG_BATCH_MIN_INTERVAL",
    )
    parser.add_argument(
        "--search-merge-interval",
        type=float,
        default=DEFAULT_SEARCH_MERGE_INTERVAL,
        help="the sealers' AUDITLOG_SEARCH_MERGE_INTERVAL (0: seals merge the search index's"
        " pending list themselves, at PostgreSQL's limit)",
    )
    parser.add_argument(
        "--rebalance-interval",
        type=float,
        default=DEFAULT_REBALANCE_INTERVAL,
        help="the sealers' AUDITLOG_SEALER_REBALANCE_INTERVAL (0: the group keeps the plan made"
        " as it formed, before any rate was known: partitions dealt by count, as Kafka's round"
        " robin does)",
    )
    parser.add_argument(
        "--search-index",
        choices=("blocks", "trigram"),
        default="blocks",
        help="seal with the search blocks alone (as migrated) or with the optional trigram"
        " index too (as after `auditlog search-index create`)",
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
    parser.add_argument(
        "--event-kind",
        choices=("realistic", "templated"),
        default="realistic",
        help="realistic events (auditlog/loadtest/events.py, the default) or the templated"
        " best case of earlier runs",
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=15,
        help=f"seconds of {WARM_UP_RATE:,} events/s before the live phase, unmeasured (0: none)",
    )
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    realistic = args.event_kind == "realistic"
    kafkaload = build_go_tool("kafkaload")
    if kafkaload is None:
        print(
            "go not found on PATH: producing with the Python producer library (aiokafka) instead"
            " of bench/kafkaload; it takes ~25 µs of CPU per event from the sealers' cores"
        )

    figures: dict[str, Any] = {
        "producer": "python" if kafkaload is None else "kafkaload",
        "event_kind": args.event_kind,
    }
    corpus: Path | None = None
    fills: list[dict[str, Any]] = []

    def fill(bench: Bench, n: int, tag: str, rate: float | None = None) -> float:
        if kafkaload is None:
            achieved = asyncio.run(_fill(bench, n, tag, rate, realistic))
            fills.append({"tag": tag, "count": n, "rate": achieved})
            return achieved
        reported = _fill_go(kafkaload, bench, n, tag, rate, corpus)
        fills.append({"tag": tag, **reported})
        return float(reported["rate"])

    with bench_stack(Path(".auditlog/bench"), args.partitions) as bench:
        if realistic and kafkaload is not None:
            # 50,000 distinct events (~2.5 s to make); kafkaload cycles through them, each
            # record with its own number in its message.
            corpus = write_corpus(bench.workdir / "corpus.jsonl", 50_000)
        figures["postgres_settings"] = asyncio.run(postgres_settings(bench.database_url))
        figures["indexes"] = asyncio.run(
            _optional_indexes(
                bench.database_url, args.search_index == "trigram", args.hash_index == "none"
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
                AUDITLOG_BATCH_MIN_INTERVAL=str(args.batch_min_interval),
                AUDITLOG_SEARCH_MERGE_INTERVAL=str(args.search_merge_interval),
                AUDITLOG_SEALER_REBALANCE_INTERVAL=str(args.rebalance_interval),
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
        sealed, seconds = asyncio.run(steady_rate(bench.database_url))
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

        waited = asyncio.run(group_settled(bench, args.sealers))
        print(f"  consumer group stable with {args.sealers} members ({waited:.1f} s more)")
        figures["group_settled_s"] = waited
        warm = int(WARM_UP_RATE * args.warm_up)
        if warm:
            fill(bench, warm, "warmup", WARM_UP_RATE)
            _wait_or_report(bench, args.events + warm)
            print(f"  warmed up: {warm:,} events at {WARM_UP_RATE:,}/s, unmeasured")
        before = [scrape(port) for port in metrics_ports]
        total = args.events + warm + int(args.rate * args.seconds)
        live = CpuMeter()
        with live.sampling():
            achieved = fill(bench, int(args.rate * args.seconds), "live", args.rate)
            _wait_or_report(bench, total)
        timed = asyncio.run(latencies(bench.database_url, "live"))
        lat = [s for _, s in timed]
        print(
            f"end to end at {achieved:,.0f} events/s offered for {args.seconds:.0f} s: "
            f"produce→sealed p50 {percentile(lat, 50) * 1000:.0f} ms, "
            f"p99 {percentile(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms "
            f"({len(lat):,} events)"
        )
        if args.seconds > 10:
            print(f"  p99 by arrival time: {windows_report(timed)}")
        vacuums = asyncio.run(maintenance(bench.database_url))
        print(
            f"  autovacuum ran {vacuums['autovacuums']} vacuums and"
            f" {vacuums['autoanalyzes']} analyzes of events partitions (both phases)"
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
        rebalances = generations = 0.0
        for port, scraped in zip(metrics_ports, before, strict=True):
            after = scrape(port)
            phase = phase_figures(scraped, after)
            sealers.append(phase)
            rebalances += after.get("auditlog_sealer_rebalances_requested_total", 0.0)
            generations += after.get("auditlog_sealer_search_generations_opened_total", 0.0)
            print(f"  sealer on :{port}: {phase_report(phase)}")
        # Asked for by the group's leader to even out the sealers' load (sealer/assignment.py),
        # in the warm-up as a rule: the plan made as the group formed had no rates to go by.
        print(f"  rebalances asked for since the sealers started: {rebalances:.0f}")
        figures["rebalances_requested"] = rebalances
        # By the merging sealer, every AUDITLOG_SEARCH_GENERATION_ENTRIES entries (prefill too).
        print(f"  search generations opened since the sealers started: {generations:.0f}")
        figures["search_generations_opened"] = generations
        figures["live"] = {
            "offered_events_per_s": args.rate,
            "achieved_events_per_s": achieved,
            "seconds": args.seconds,
            "events": len(lat),
            "latency_ms": results.percentiles(lat, 1000),
            "windows_10s": by_window(timed),
            "cpu_s": cpu,
            "cpu_us_per_event": {g: c / max(len(lat), 1) * 1e6 for g, c in cpu.items()},
            "sealers": sealers,
        }
        figures["autovacuum_both_phases"] = vacuums
        figures["fills"] = fills
        # More than produced would be duplicates; dead letters would be envelopes the sealer
        # did not accept as canonical, i.e. a producer that does not send what it should.
        sealed = asyncio.run(count_events(bench.database_url))
        dead = asyncio.run(dead_letters(bench))
        print(f"check: {sealed:,} events sealed of {total:,} produced, {dead} dead letters")
        figures["check"] = {"sealed": sealed, "produced": total, "dead_letters": dead}
        if sealed != total or dead:
            diagnosis = asyncio.run(diagnose(bench))
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
