"""Search latency against the number of search-block generations it probes.

    .venv/bin/python -m bench.bench_search_generations [--events 200000]
        [--generations 1 10 100 400] [--rounds 40] [--compact]

Each generation has its own GIN index over its blocks' keys (auditlog/pg/search_generations.py),
and a search probes every one: what does a generation add to a search? Loads ``--events``
realistic events into one log as bench_search does (:func:`bench.bench_search.load`), then, for
each count K of ``--generations``, rewrites the same blocks spread evenly over K new generations
(the ones before, left empty, are dropped as retention drops them, but for the two newest, which
stay empty), records the closed generations' time spans as the merging sealer does, vacuums,
and times ``POST /v1/search`` first pages with bench_search's queries against one ``auditlog
query``, and a UUID with a time range of two seconds around its event (which probes only the
generations overlapping it and the two newest); and counts the relation locks a search holds
with and without that range (each search holds one per table and index it may read until its
transaction ends, out of PostgreSQL's shared lock table). The events stay the same, so only
the number of indexes probed changes; a database with K generations of 2M entries each would
also have K times the events.

``--compact``: after each count's searches, ``auditlog search-index compact`` (its default size,
auditlog/pg/search_compaction.py) rewrites the closed generations as one, timed, with
PostgreSQL's CPU, the WAL written and the longest wait of a writer sealing a block every 20 ms
meanwhile (as bench_upgrade's), and the searches and locks are measured again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any
from unittest import mock

import aiohttp
import asyncpg

from auditlog.pg import search_compaction, search_generations
from auditlog.pg.search_blocks import copy_blocks, stored_block_rows
from bench import results
from bench.bench_search import UUID, Samples, loaded_log, search
from bench.bench_upgrade import block_writer
from bench.harness import Bench, CpuMeter, free_port, percentile, wait_http, wait_idle
from query import search as search_module
from query.search import MAX_RESULTS, SearchSpec
from query.search import run as run_search
from query.search_sql import Filter


async def _spread(url: str, log_id: str, count: int) -> int:
    """The log's blocks, rewritten over ``count`` new generations; returns how many
    generations there are now."""
    conn = await asyncpg.connect(url)
    try:
        rows = await stored_block_rows(conn, log_id, 0, 2**62)
        await conn.execute("DELETE FROM search_blocks")
        await search_generations.drop_empty(conn)
        per = -(-len(rows) // count)
        for start in range(0, per * count, per):
            await search_generations.open_next(conn)
            async with conn.transaction():
                await copy_blocks(conn, rows[start : start + per])
        await search_generations.bound_closed(conn)
        await conn.execute("VACUUM (ANALYZE) search_blocks")
        return len(await search_generations.generations(conn))
    finally:
        await conn.close()


async def _picks(url: str, log_id: str) -> list[tuple[str, datetime]]:
    """A UUID from every 997th event's message, with the time it was received."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT message, received_at FROM events WHERE log_id = $1 AND idx % 997 = 0", log_id
        )
    finally:
        await conn.close()
    return [(u, r["received_at"]) for r in rows for u in UUID.findall(r["message"] or "")]


async def _windowed(
    base: str, token: str, picks: list[tuple[str, datetime]], rounds: int
) -> dict[str, Any]:
    """A UUID searched within two seconds around the event holding it."""
    rng = random.Random(11)
    latencies: list[float] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        for _ in range(rounds):
            uuid, at = rng.choice(picks)
            body = {
                "query": uuid,
                "limit": 20,
                "verbose": False,
                "start": (at - timedelta(seconds=1)).isoformat(),
                "end": (at + timedelta(seconds=1)).isoformat(),
            }
            began = time.perf_counter()
            async with session.post(f"{base}/v1/search", data=json.dumps(body)) as resp:
                payload = await resp.json()
            latencies.append((time.perf_counter() - began) * 1000)
            assert payload["status"] == "Success", payload
            assert payload["result"]["count"] >= 1, payload
    print(
        f"search <a UUID>, two seconds around it: p50 {percentile(latencies, 50):.0f} ms"
        f"  p95 {percentile(latencies, 95):.0f} ms  (n={rounds})"
    )
    return {
        "query": "<a UUID>, start and end a second around it",
        "latency_ms": results.percentiles(latencies),
    }


_HELD = "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'"


@contextlib.contextmanager
def counting_locks(module: ModuleType) -> Iterator[list[int]]:
    """While inside, ``module``'s released reads (auditlog.pg.locks.fetch_released) also count
    the relation locks held just before their savepoint lets go: the one item of the list
    yielded is the most seen. ``create``: a module from before the released reads has none (a
    run of the old code for comparison, recorded in the result's dirty_paths)."""
    most = [0]

    async def counted(conn: Any, sql: str, *args: Any) -> list[asyncpg.Record]:
        savepoint = conn.transaction()
        await savepoint.start()
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            most[0] = max(most[0], await conn.fetchval(_HELD) - 1)  # not the count's own pg_locks
            return rows
        finally:
            await savepoint.rollback()

    with mock.patch.object(module, "fetch_released", counted, create=True):
        yield most


async def _locks(
    url: str, topic: str, query: str, flt: Filter, order_by: str = "received_at"
) -> dict[str, int]:
    """The relation locks of a search, as the query service runs it: one per table and index a
    statement's plan may read, held to the end of the transaction (``held_at_end``) unless the
    statement ran released (auditlog.pg.locks.fetch_released: its probe of the blocks, each
    month of a walk), whose locks go when it ends; ``most_at_once``, the most held at any
    statement's end, which is what concurrent searches need of PostgreSQL's lock table
    (``max_locks_per_transaction`` times ``max_connections``) together."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            spec = SearchSpec(query, flt, order_by, True, 20, MAX_RESULTS, False)
            with counting_locks(search_module) as most:
                await run_search(conn, spec, topic)
            held: int = await conn.fetchval(_HELD)
    finally:
        await conn.close()
    return {"held_at_end": held, "most_at_once": max(most[0], held)}


async def _compact(url: str) -> dict[str, Any]:
    """Compact, while a writer seals a block every 20 ms as bench_upgrade's does: how long
    the swap's lock kept a seal waiting."""
    stop = asyncio.Event()
    waits: list[tuple[float, float]] = []
    writer = asyncio.create_task(block_writer(url, stop, waits))
    conn = await asyncpg.connect(url)
    try:
        await asyncio.sleep(1)
        meter = CpuMeter()
        wal_before = await conn.fetchval("SELECT pg_current_wal_lsn()")
        with meter.sampling():
            done = await search_compaction.compact(conn)
        wal = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", wal_before)
        await asyncio.sleep(1)
        stop.set()
        await writer
        generations = len(await search_generations.generations(conn))
        await conn.execute("VACUUM (ANALYZE) search_blocks")
    finally:
        stop.set()
        await conn.close()
    entries = sum(run.entries for run in done)
    postgres = meter.seconds().get("postgres", 0.0)
    out = {
        "runs": [
            {"generations": len(r.numbers), "entries": r.entries, "seconds": r.seconds}
            for r in done
        ],
        "seconds": round(sum(run.seconds for run in done), 3),
        "postgres_cpu_s": round(postgres, 3),
        "postgres_cpu_us_per_entry": round(postgres / entries * 1e6, 2) if entries else None,
        # The writer's few blocks included: ~50 a second, each a small transaction.
        "wal_bytes": int(wal),
        "wal_bytes_per_entry": round(int(wal) / entries, 1) if entries else None,
        "generations_after": generations,
        "writer_seals": len(waits),
        "writer_longest_seal_s": round(max(w for _, w in waits), 3),
        "writer_seal_ms": results.percentiles([w for _, w in waits], 1000),
    }
    print(f"compacted: {json.dumps(out)}", flush=True)
    return out


def _measure(
    bench: Bench, base: str, samples: Samples, picks: list[tuple[str, datetime]], rounds: int
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """bench_search's queries, the UUID within two seconds, and the locks of one search."""
    measured = asyncio.run(search(base, bench.token, samples, rounds))
    measured.append(asyncio.run(_windowed(base, bench.token, picks, rounds)))
    uuid, at = picks[0]
    window = Filter(at - timedelta(seconds=1), at + timedelta(seconds=1))
    locks = {
        "<a UUID>": asyncio.run(_locks(bench.database_url, bench.topic, uuid, Filter())),
        "<a UUID>, a second around it": asyncio.run(
            _locks(bench.database_url, bench.topic, uuid, window)
        ),
    }
    print(f"relation locks held by one search: {locks}", flush=True)
    return measured, locks


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--generations", type=int, nargs="+", default=[1, 10, 100, 400])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--compact", action="store_true", help="also compact each count and measure again"
    )
    results.add_option(parser)
    args = parser.parse_args()
    if min(args.generations) < 1:
        parser.error("--generations: counts of at least 1")
    started = results.now()
    figures: dict[str, Any] = {"runs": []}
    with loaded_log(args.events, args.seed) as (bench, log_id, samples, load_s):
        figures["load_s"] = load_s
        picks = asyncio.run(_picks(bench.database_url, log_id))
        port = free_port()
        # Every search keeps its result set for paging; ~30 searches a round would reach the
        # default cap of 1,000 per token.
        proc = bench.spawn(
            "query", AUDITLOG_PORT=str(port), AUDITLOG_QUERY_MAX_RESULT_SETS="100000"
        )
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        for count in args.generations:
            total = asyncio.run(_spread(bench.database_url, log_id, count))
            wait_idle()
            print(f"{count} generations with blocks, {total} in all:", flush=True)
            measured, locks = _measure(bench, base, samples, picks, args.rounds)
            run: dict[str, Any] = {
                "generations_with_blocks": count,
                "generations": total,
                "search": measured,
                "relation_locks_per_search": locks,
            }
            if args.compact:
                wait_idle()
                run["compaction"] = asyncio.run(_compact(bench.database_url))
                wait_idle()
                print(f"{count} generations compacted:", flush=True)
                measured, locks = _measure(bench, base, samples, picks, args.rounds)
                run["after_compaction"] = {"search": measured, "relation_locks_per_search": locks}
            figures["runs"].append(run)
        proc.terminate()
        proc.wait(30)
    path = results.write("bench_search_generations", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
