"""Query service: inclusion proofs (receipts) per second on a large log.

    .venv/bin/python bench/bench_query.py [--events 10000000] [--seconds 10] [--concurrency 32]

Setup (in a scratch database of the local stack, dropped afterwards): one log of ``--events``
leaves whose tiles are built with the real ``integrate`` and a signed checkpoint, and as many
``events`` rows generated in SQL (10,000 actors, 100,000 targets, 50 tenants, a random md5 in
each message, one event per millisecond). Secondary indexes are dropped during the load and built
afterwards, as a bulk import would; their build time is reported (``--no-search``: not built,
receipts do not need them). Search is measured by bench/bench_search.py, on realistic events.

Then one ``auditlog query`` (its default worker processes, one per usable CPU, or
``--query-workers``) is measured over HTTP:

* proofs: ``GET /v1/logs/{log}/receipts/{random index}`` (each answer is an inclusion proof
  plus the signed checkpoint), by ``bench/loadgen`` (Go, built on first use into
  ``.auditlog/cache/go/``): capacity in a closed loop with ``--concurrency`` clients, then
  latency at a fixed offered rate (``--rate``, open loop, latency measured from each request's
  due time so a stalled server cannot hide behind a slower client). Without ``go`` on PATH, a
  Python (aiohttp) closed loop stands in and says so; it takes about as much CPU as the server.

Also in-process: ``ProofBuilder.inclusion`` alone, the ceiling the HTTP figure approaches. The
load generator shares the machine with PostgreSQL and the service, so figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from auditlog.core.note import NoteSigner
from auditlog.runtime.settings import default_workers
from bench import results
from bench.harness import (
    Stalls,
    bench_stack,
    build_go_tool,
    free_port,
    percentile,
    wait_http,
    wait_idle,
)
from bench.query_data import build_log, load_events, secondary_indexes
from query.proofs import LogHead, ProofBuilder


async def in_process_proofs(
    url: str, log_id: str, size: int, seconds: float, tile_cache: int, warm: bool = False
) -> dict[str, Any]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    try:
        row = await pool.fetchrow(
            "SELECT log_id, origin, hash_scheme, size, root, checkpoint FROM logs"
            " WHERE log_id = $1",
            log_id,
        )
        assert row is not None
        head = LogHead(log_id, row["origin"], row["hash_scheme"], size, bytes(row["root"]),
                       row["checkpoint"])  # fmt: skip
        builder = ProofBuilder(pool, tile_limit=tile_cache, node_limit=65536)
        if warm:
            # A long-running service has seen its log: one proof per level-0 tile (not timed).
            for first in range(0, size, 256):
                await builder.inclusion(head, first)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await builder.inclusion(head, random.randrange(size))
            latencies.append(time.perf_counter() - began)
        state = "warmed" if warm else "cold"
        return _report(f"in-process ProofBuilder.inclusion (random leaf, {tile_cache} cached"
                       f" tiles, {state})", latencies, seconds)  # fmt: skip
    finally:
        await pool.close()


def _report(what: str, latencies: list[float], seconds: float) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies]
    print(
        f"{what}: {len(ms) / seconds:,.0f}/s  p50 {percentile(ms, 50):.2f} ms"
        f"  p95 {percentile(ms, 95):.2f} ms  p99 {percentile(ms, 99):.2f} ms  (n={len(ms):,})"
    )
    return {
        "what": what,
        "per_s": len(ms) / seconds,
        "seconds": seconds,
        "latency_ms": results.percentiles(ms),
    }


def run_loadgen(binary: Path, url: str, token: str, seconds: float, *, concurrency: int = 0,
                rate: float = 0, warmup: float = 0) -> dict[str, Any]:  # fmt: skip
    mode = ["-concurrency", str(concurrency)] if concurrency else ["-rate", str(rate)]
    cmd = [str(binary), "-url", url, "-token", token, "-duration", f"{seconds}s",
           "-warmup", f"{warmup}s", *mode]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _report_loadgen(what: str, r: dict[str, Any]) -> None:
    print(
        f"{what}: {r['ok_rate']:,.0f}/s  p50 {r['p50_ms']:.2f} ms  p95 {r['p95_ms']:.2f} ms"
        f"  p99 {r['p99_ms']:.2f} ms  max {r['max_ms']:.2f} ms  (n={r['requests']:,},"
        f" non-2xx {r['non_2xx']}, errors {r['errors']})"
    )
    print(f"  loadgen: {json.dumps(r)}")


async def warm_tiles(
    base: str, token: str, log_id: str, size: int, concurrency: int, workers: int = 1
) -> None:
    """One receipt per level-0 tile (not timed), as a long-running service has seen its log.

    Each worker process has its own tile cache, and the kernel hands each connection to one of
    them: with several workers every tile is asked for in several passes, each on new
    connections: four per worker, after which a worker has missed a given tile with odds of
    (1 - 1/workers)**passes, ~2 %."""
    headers = {"Authorization": f"Bearer {token}"}

    async def warmer(session: aiohttp.ClientSession, firsts: Iterator[int]) -> None:
        for first in firsts:
            async with session.get(f"{base}/v1/logs/{log_id}/receipts/{first}") as resp:
                await resp.read()

    for _ in range(1 if workers == 1 else 4 * workers):
        firsts = iter(range(0, size, 256))
        async with aiohttp.ClientSession(headers=headers) as session:
            await asyncio.gather(*(warmer(session, firsts) for _ in range(concurrency)))


def loadgen_proofs(binary: Path, base: str, token: str, log_id: str, size: int, seconds: float,
                   concurrency: int, rates: list[float], warm: bool,
                   stalls: Stalls, workers: int = 1) -> list[dict[str, Any]]:  # fmt: skip
    phases: list[dict[str, Any]] = []
    url = f"{base}/v1/logs/{log_id}/receipts/{{rand:{size}}}"
    if warm:
        asyncio.run(warm_tiles(base, token, log_id, size, concurrency, workers))
    state = "warmed" if warm else "2 s warm-up"
    closed = run_loadgen(binary, url, token, seconds, concurrency=concurrency, warmup=2)
    what = f"HTTP receipts, Go loadgen, {concurrency} closed-loop clients ({state})"
    _report_loadgen(what, closed)
    print(f"  {stalls.report()}")
    phases.append({"what": what, "concurrency": concurrency, "loadgen": closed,
                   "service": stalls.figures})  # fmt: skip
    for rate in (r for r in rates if r > 0):
        opened = run_loadgen(binary, url, token, seconds, rate=rate, warmup=2)
        what = f"HTTP receipts, Go loadgen, open loop at {rate:,.0f}/s offered ({state})"
        _report_loadgen(what, opened)
        if opened["backlog"]:
            print(f"  {opened['backlog']:,} requests were still queued at the end: overloaded")
        print(f"  {stalls.report()}")
        phases.append({"what": what, "offered_per_s": rate, "loadgen": opened,
                       "service": stalls.figures})  # fmt: skip
    return phases


async def http_proofs(base: str, token: str, log_id: str, size: int, seconds: float,
                      concurrency: int, warm: bool = False) -> dict[str, Any]:  # fmt: skip
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        # Warm-up pass, not measured: fills the tile and node caches as a running service has.
        deadline = time.perf_counter() + 2

        async def worker(record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                url = f"{base}/v1/logs/{log_id}/receipts/{random.randrange(size)}"
                began = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                    elif record:
                        latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(worker(False) for _ in range(concurrency)))
        if warm:
            firsts = iter(range(0, size, 256))

            async def warmer() -> None:
                for first in firsts:
                    url = f"{base}/v1/logs/{log_id}/receipts/{first}"
                    async with session.get(url) as resp:
                        await resp.read()

            await asyncio.gather(*(warmer() for _ in range(concurrency)))
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(worker(True) for _ in range(concurrency)))
    state = "warmed" if warm else "2 s warm-up"
    figures = _report(f"HTTP receipts, Python aiohttp client, {concurrency} concurrent clients"
                      f" ({state})", latencies, seconds)  # fmt: skip
    if errors:
        print(f"  errors: {errors}")
    return {**figures, "concurrency": concurrency, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--tile-cache",
        type=int,
        nargs="+",
        default=[4096],
        help="AUDITLOG_QUERY_TILE_CACHE values to measure proofs with",
    )
    parser.add_argument(
        "--warm", action="store_true", help="before timing proofs, touch every level-0 tile once"
    )
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[3000.0],
        help="open-loop receipts/s offered after the closed loop, one run each (0: skip; needs go)",
    )
    parser.add_argument(
        "--no-search", action="store_true", help="skip building search's secondary indexes"
    )
    parser.add_argument(
        "--query-log-level",
        default="info",
        help="AUDITLOG_LOG_LEVEL of the measured query process (info: one line per request)",
    )
    parser.add_argument(
        "--query-workers",
        type=int,
        default=0,
        help="AUDITLOG_QUERY_WORKERS of the measured query (0: its default, one per usable CPU)",
    )
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    loadgen = build_go_tool("loadgen")
    if loadgen is None:
        print(
            "go not found on PATH: HTTP receipts measured with the Python (aiohttp) client"
            " instead of bench/loadgen; it competes with the server for the same cores, and"
            " there is no open-loop phase"
        )
    figures: dict[str, Any] = {"load_generator": "python" if loadgen is None else "loadgen"}
    with bench_stack(Path(".auditlog/bench"), partitions=1) as bench:
        log_id = bench.topic + "-0"
        signer = NoteSigner.from_skey(bench.key_file.read_text().strip())
        figures["tiles_built_s"] = asyncio.run(
            build_log(bench.database_url, log_id, bench.topic, args.events, signer)
        )
        if args.no_search:
            without = frozenset(name for name, _ in asyncio.run(secondary_indexes(bench)))
        else:
            without = frozenset()
        figures["events"] = asyncio.run(
            load_events(bench.database_url, log_id, args.events, without)
        )
        idle = wait_idle()
        figures["idle_after_s"] = idle
        print(f"machine idle again after {idle:.0f} s")
        figures["tile_caches"] = []
        workers = args.query_workers or default_workers()
        figures["query_workers"] = workers
        for tiles in args.tile_cache:
            measured: dict[str, Any] = {"tile_cache": tiles}
            figures["tile_caches"].append(measured)
            measured["in_process"] = asyncio.run(
                in_process_proofs(
                    bench.database_url, log_id, args.events, args.seconds, tiles, args.warm
                )
            )
            port = free_port()
            # Its log lines go to a file, as a deployment's would go to its collector.
            proc = bench.spawn("query", AUDITLOG_PORT=str(port),
                               AUDITLOG_QUERY_TILE_CACHE=str(tiles),
                               AUDITLOG_QUERY_WORKERS=str(workers),
                               AUDITLOG_LOG_LEVEL=args.query_log_level)  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            print(f"-- query with AUDITLOG_QUERY_TILE_CACHE={tiles}, {workers} worker processes")
            if loadgen is not None:
                stalls = Stalls(bench.log_path(proc), proc.pid)
                measured["http"] = loadgen_proofs(
                    loadgen, base, bench.token, log_id, args.events, args.seconds,
                    args.concurrency, args.rate, args.warm, stalls, workers,
                )  # fmt: skip
            else:
                python_client = asyncio.run(
                    http_proofs(base, bench.token, log_id, args.events, args.seconds,
                                args.concurrency, args.warm)
                )  # fmt: skip
                measured["http"] = [python_client]
            proc.terminate()
            proc.wait(30)
    path = results.write("bench_query", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
