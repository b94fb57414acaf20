"""Retention on a large log: how long plan and apply take, and what they cost a sealer meanwhile.

    .venv/bin/python -m bench.bench_retention [--events 10000000] [--months 10] [--keep 4]

Setup (a scratch database of the local stack, dropped afterwards): one log of ``--events``
leaves (tiles built with the real ``integrate`` and a signed checkpoint, bench/query_data.py)
and as many generated ``events`` rows, spread evenly over ``--months`` months from January 2025,
each month in the log's own leaf partition as the sealer creates them, plus their search blocks'
and entry bundles' row counts (one bundle per 256 entries). Then:

* ``plan``: ``auditlog retention plan`` as of the month after the last, keeping ``--keep``
  months (so ``months - keep`` months expire), timed in process;
* ``apply``: signing the pruned bound, dropping the expired leaves, deleting the bundles and
  search blocks below the bound, timed in process;
* sealing meanwhile: a second log is sealed in a loop (batches of ``--batch`` realistic
  events, auditlog/loadtest/events.py, the sealer's own ``seal`` transaction and partitions)
  for ``--seconds`` before retention (the baseline) and while apply runs; each seal's latency
  is recorded, and the result shows the percentiles and the worst seal of each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from auditlog.core.tiles import TILE_WIDTH
from auditlog.loadtest.events import EventGenerator
from auditlog.pg import retention
from bench import results
from bench.harness import bench_stack, wait_idle
from bench.query_data import _GENERATE, build_log, rebuilding_indexes
from sealer.records import Sealable
from sealer.store import Partitions, connect_pool, load_head, seal
from sealer.timestamps import micros

START = datetime(2025, 1, 1, tzinfo=UTC)
_ONE_MS = "timestamptz '2026-01-01' + i * interval '1 millisecond'"
# query_data's generator, with the events spread over the months instead of one per ms.
_SPREAD = _GENERATE.replace(_ONE_MS, "timestamptz '2025-01-01' + i * $4::interval")
assert _SPREAD != _GENERATE, "bench/query_data.py's generator changed: update _ONE_MS"


def _month_start(months: int) -> datetime:
    return START.replace(year=START.year + months // 12, month=months % 12 + 1)


async def _load(url: str, log_id: str, size: int, months: int) -> dict[str, Any]:
    span = _month_start(months) - START
    step = span / size
    partitions = Partitions()
    conn = await asyncpg.connect(url)
    try:
        times = [micros(_month_start(m) + timedelta(days=1)) for m in range(months)]
        await partitions.ensure(conn, log_id, times)
    finally:
        await conn.close()

    async def fill(url: str) -> float:
        conn = await asyncpg.connect(url)
        try:
            began = time.perf_counter()
            for lo in range(0, size, 1_000_000):
                hi = min(size, lo + 1_000_000)
                await conn.execute(_SPREAD, log_id, lo, hi, step)
                print(f"  events: {hi:,} rows ({time.perf_counter() - began:.0f} s)", flush=True)
            # What retention deletes besides the partitions: a bundle per 256 entries (small
            # stand-ins: their size does not change a DELETE's cost much) and a search block
            # per 64.
            await conn.execute(
                "INSERT INTO bundles (log_id, idx, data)"
                " SELECT $1, b, '\\x00'::bytea FROM generate_series(0, $2::bigint - 1) b",
                log_id,
                -(-size // TILE_WIDTH),
            )
            await conn.execute(
                "INSERT INTO search_blocks (log_id, first_idx, last_idx, first_at, last_at,"
                " keys) SELECT $1, b * 64, b * 64 + 63, now(), now(), ARRAY[1, 2, 3]"
                " FROM generate_series(0, $2::bigint - 1) b",
                log_id,
                -(-size // 64),
            )
            return time.perf_counter() - began
        finally:
            await conn.close()

    load_s, figures = await rebuilding_indexes(url, fill)
    return {"rows": size, "load_s": load_s, **figures}


class Sealing:
    """Seals batches into a second log in a loop and records each seal's latency."""

    def __init__(self, url: str, topic: str, signer: NoteSigner, batch: int) -> None:
        self.url, self.topic, self.signer, self.batch = url, topic, signer, batch
        self.latencies: list[float] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        hasher = get_hasher("rfc6962-sha256")
        pool = await connect_pool(self.url, max_size=2)
        partitions = Partitions()
        generator = EventGenerator(1)  # realistic events (auditlog/loadtest/events.py)
        try:
            head = await load_head(pool, self.topic, 1, "bench.auditlog.test", hasher)
            while not self.stop.is_set():
                now = datetime.now(UTC)
                items = []
                for i in range(self.batch):
                    env = Envelope(event=generator.event(now), received_at=format_received_at(now))
                    items.append(Sealable(head.next_offset + i, env, micros(now), None))
                await partitions.ensure(pool, head.log_id, [micros(now)])
                began = time.perf_counter()
                async with pool.acquire() as conn:
                    result = await seal(
                        conn, head, hasher, self.signer, items, head.next_offset + self.batch
                    )
                self.latencies.append(time.perf_counter() - began)
                head = result.head
        finally:
            await pool.close()


def _summary(latencies: list[float], seconds: float) -> dict[str, Any]:
    return {
        "seals": len(latencies),
        "seals_per_s": len(latencies) / seconds if seconds else 0.0,
        "latency_ms": results.percentiles(latencies, 1000.0) if latencies else {},
        "max_ms": max(latencies) * 1000 if latencies else None,
    }


async def _measure(url: str, topic: str, signer: NoteSigner, args: argparse.Namespace) -> Any:
    log_id = f"{topic}-0"
    as_of = _month_start(args.months)
    figures: dict[str, Any] = {}
    sealing = Sealing(url, topic, signer, args.batch)
    task = asyncio.create_task(sealing.run())
    await asyncio.sleep(args.seconds)
    baseline = list(sealing.latencies)
    figures["sealing_before"] = _summary(baseline, args.seconds)
    conn = await asyncpg.connect(url)
    try:
        await retention.set_policy(conn, "log", log_id, args.keep, require_archive=False)
        began = time.perf_counter()
        plans = await retention.plan_retention(conn, as_of, [log_id])
        figures["plan_s"] = time.perf_counter() - began
        plan = plans[0]
        figures["dropped_leaves"] = len(plan.drops)
        figures["new_bound"] = plan.new_bound
        mark = len(sealing.latencies)
        began = time.perf_counter()
        await retention.apply_plan(conn, plan, signer, report=print)
        figures["apply_s"] = time.perf_counter() - began
        during = sealing.latencies[mark:]
        figures["sealing_during_apply"] = _summary(during, figures["apply_s"])
        figures["events_left"] = await conn.fetchval(
            "SELECT count(*) FROM events WHERE log_id = $1", log_id
        )
    finally:
        await conn.close()
    sealing.stop.set()
    await task
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--months", type=int, default=10)
    parser.add_argument("--keep", type=int, default=4, help="months the policy keeps")
    parser.add_argument("--seconds", type=float, default=10.0, help="baseline sealing time")
    parser.add_argument("--batch", type=int, default=500, help="events per measured seal")
    results.add_option(parser)
    args = parser.parse_args()
    if not 1 <= args.keep < args.months:
        parser.error("--keep must leave at least one month to expire")
    started = results.now()
    figures: dict[str, Any] = {}
    with bench_stack(Path(".auditlog/bench"), partitions=2) as bench:
        log_id = bench.topic + "-0"
        signer = NoteSigner.from_skey(bench.key_file.read_text().strip())
        figures["tiles_built_s"] = asyncio.run(
            build_log(bench.database_url, log_id, bench.topic, args.events, signer)
        )
        figures["events"] = asyncio.run(_load(bench.database_url, log_id, args.events, args.months))
        figures["idle_after_s"] = wait_idle()
        figures.update(asyncio.run(_measure(bench.database_url, bench.topic, signer, args)))
    print(
        f"plan {figures['plan_s']:.2f} s, apply {figures['apply_s']:.2f} s"
        f" ({figures['dropped_leaves']} leaves, bound {figures['new_bound']:,});"
        f" seal p50/p99/max before {figures['sealing_before']['latency_ms'].get('p50', 0):.1f}/"
        f"{figures['sealing_before']['latency_ms'].get('p99', 0):.1f}/"
        f"{figures['sealing_before']['max_ms'] or 0:.1f} ms,"
        f" during apply {figures['sealing_during_apply']['latency_ms'].get('p50', 0):.1f}/"
        f"{figures['sealing_during_apply']['latency_ms'].get('p99', 0):.1f}/"
        f"{figures['sealing_during_apply']['max_ms'] or 0:.1f} ms"
    )
    path = results.write("bench_retention", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
