"""Ingest throughput and latency through real Kafka, one ingest process.

    .venv/bin/python bench/bench_ingest.py [--seconds 10] [--concurrency 64] [--rate 1000]

Phases: bulk (`/v2/log`, 1,000 events a request), single events (`/v1/log`, closed loop with
`--concurrency` clients), and a paced open loop at `--rate` requests/s for latency. The load
generator runs on the same machine (aiohttp), so it competes with ingest, Kafka and PostgreSQL
for the two cores: the figures are a floor for what one ingest process does on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiohttp

from bench.harness import bench_stack, free_port, percentile, wait_http


async def _closed_loop(url: str, headers: dict[str, str], body: bytes, seconds: float,
                       concurrency: int) -> tuple[int, list[float], int]:
    done, errors, latencies = 0, 0, []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1
                        latencies.append(time.perf_counter() - began)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, latencies, errors


async def _open_loop(url: str, headers: dict[str, str], body: bytes, seconds: float,
                     rate: int) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(headers=headers,
                                     connector=aiohttp.TCPConnector(limit=512)) as session:

        async def one() -> None:
            nonlocal errors
            began = time.perf_counter()
            async with session.post(url, data=body) as resp:
                await resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    errors += 1

        tasks = []
        start = time.perf_counter()
        n = int(seconds * rate)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        achieved = n / (time.perf_counter() - start)
        await asyncio.gather(*tasks)
    return latencies, errors, achieved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with bench_stack(Path(".auditlog/bench"), args.partitions) as bench:
        port = free_port()
        bench.spawn("ingest", AUDITLOG_PORT=str(port))
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        headers = {"Authorization": f"Bearer {bench.token}"}
        single = b'{"event":{"message":"Security updated","action":"Off","actor":"dennis.nedry@ingen.com","target":"Visitor center"}}'  # noqa: E501
        bulk = (b'{"events":[' + b",".join(
            b'{"event":{"message":"bulk event %d","actor":"svc-%d","action":"write"}}' % (i, i % 9)
            for i in range(1000)) + b"]}")
        asyncio.run(_closed_loop(f"{base}/v1/log", headers, single, 2, 16))  # warm-up

        n, lat, err = asyncio.run(_closed_loop(f"{base}/v2/log", headers, bulk, args.seconds, 4))
        print(f"bulk /v2/log (1000 events/request, 4 clients): {n * 1000 / args.seconds:,.0f} "
              f"events/s, request p50 {percentile(lat, 50) * 1000:.1f} ms, "
              f"p99 {percentile(lat, 99) * 1000:.1f} ms, errors {err}")

        n, lat, err = asyncio.run(_closed_loop(f"{base}/v1/log", headers, single, args.seconds,
                                               args.concurrency))
        print(f"single /v1/log ({args.concurrency} clients): {n / args.seconds:,.0f} requests/s, "
              f"p50 {percentile(lat, 50) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms, "
              f"errors {err}")

        lat, err, achieved = asyncio.run(_open_loop(f"{base}/v1/log", headers, single,
                                                    args.seconds, args.rate))
        print(f"paced /v1/log at {args.rate} requests/s (achieved {achieved:,.0f}): "
              f"p50 {percentile(lat, 50) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms, "
              f"errors {err}")


if __name__ == "__main__":
    main()
