"""Sealer throughput from a pre-filled topic, and produce→sealed latency end to end.

    .venv/bin/python -m bench.bench_sealer [--events 200000] [--sealers 2] [--rate 20000]

Phase 1 fills a topic with `--events` canonical envelopes (producer library), then starts
`--sealers` sealer processes and times how long they take to seal everything. Phase 2 keeps
the sealers running while the producer library publishes at `--rate` events/s for `--seconds`,
and reads each event's latency from the database: the time its batch's checkpoint was written
(``checkpoints.created_at`` is ``clock_timestamp()`` at insert, just before commit) minus its
``received_at`` (set by the producer when the envelope was built).
Kafka, PostgreSQL, the producer and the sealers all share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import asyncpg

from auditlog.producer import AuditProducer
from bench.harness import Bench, bench_stack, percentile


async def _fill(bench: Bench, n: int, tag: str, rate: float | None = None) -> float:
    """Publish ``n`` events (paced at ``rate`` events/s when given); returns events/s achieved."""
    chunk = 1000
    async with AuditProducer(bench.kafka, bench.topic, max_in_flight=50_000) as producer:
        began = time.perf_counter()
        for start in range(0, n, chunk):
            events = [
                {
                    "message": f"{tag} {i}",
                    "actor": f"user-{i % 97}",
                    "action": "read",
                    "target": f"doc-{i % 1013}",
                    "tenant_id": f"tenant-{i % 31}",
                }
                for i in range(start, min(n, start + chunk))
            ]
            if rate is not None:
                delay = began + start / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.log_many(events)
        return n / (time.perf_counter() - began)


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def _wait(url: str, n: int, within: float) -> float:
    began = time.perf_counter()
    while (count := await _count(url)) < n:
        if time.perf_counter() - began > within:
            raise RuntimeError(f"only {count} of {n} sealed after {within}s")
        await asyncio.sleep(0.1)
    return time.perf_counter() - began


async def _latencies(url: str, tag: str) -> list[float]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM (SELECT min(c.created_at) FROM checkpoints c"
            "  WHERE c.log_id = e.log_id AND c.size > e.idx) - e.received_at) AS s"
            " FROM events e WHERE e.message LIKE $1",
            f"{tag} %",
        )
    finally:
        await conn.close()
    return [float(r["s"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sealers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--batch-age", type=float, default=0.1)
    args = parser.parse_args()
    with bench_stack(Path(".auditlog/bench"), args.partitions) as bench:
        produced = asyncio.run(_fill(bench, args.events, "prefill"))
        print(
            f"prefill: {args.events:,} events produced at {produced:,.0f} events/s "
            f"({args.partitions} partitions)"
        )
        began = time.perf_counter()
        for _ in range(args.sealers):
            bench.spawn(
                "sealer",
                AUDITLOG_BATCH_MAX_SIZE=str(args.batch_size),
                AUDITLOG_BATCH_MAX_AGE=str(args.batch_age),
            )
        asyncio.run(_wait(bench.database_url, args.events, within=600))
        elapsed = time.perf_counter() - began
        print(
            f"sealer throughput: {args.events:,} events sealed in {elapsed:.1f} s = "
            f"{args.events / elapsed:,.0f} events/s with {args.sealers} sealer processes "
            "(including their start-up and group join)"
        )

        total = args.events + int(args.rate * args.seconds)
        achieved = asyncio.run(_fill(bench, int(args.rate * args.seconds), "live", args.rate))
        asyncio.run(_wait(bench.database_url, total, within=600))
        lat = asyncio.run(_latencies(bench.database_url, "live"))
        print(
            f"end to end at {achieved:,.0f} events/s offered for {args.seconds:.0f} s: "
            f"produce→sealed p50 {percentile(lat, 50) * 1000:.0f} ms, "
            f"p99 {percentile(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms "
            f"({len(lat):,} events)"
        )


if __name__ == "__main__":
    main()
