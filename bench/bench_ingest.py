"""Ingest throughput and latency through real Kafka, one ``auditlog ingest``.

    .venv/bin/python -m bench.bench_ingest [--seconds 10] [--concurrency 64] [--rate 1000]
        [--workers N]

Phases: bulk (`/v2/log`, 1,000 events a request, 4 clients), single events (`/v1/log`, closed
loop with `--concurrency` clients), and a paced open loop at `--rate` requests/s for latency.
``--workers`` sets AUDITLOG_INGEST_WORKERS (default: the service's own, one per CPU). Each phase
reports the CPU ingest's processes spent per event, and Kafka's. The load generator
(`auditlog.loadtest.run`, aiohttp) runs on the same machine, so it competes with ingest, Kafka
and PostgreSQL for the two cores: the figures are a floor for one ingest.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from auditlog.loadtest.run import LoadResult, closed_loop, open_loop
from bench import results
from bench.harness import CpuMeter, bench_stack, free_port, wait_http


def _figures(label: str, result: LoadResult, cpu: dict[str, float]) -> dict[str, Any]:
    """What ``LoadResult.summary`` prints, and more of the latency distribution."""
    per_event = {
        f"{group}_cpu_us_per_event": round(seconds / max(result.events, 1) * 1e6, 1)
        for group, seconds in sorted(cpu.items())
    }
    print("  CPU per event: " + ", ".join(f"{k} {v} µs" for k, v in per_event.items()))
    return {
        **per_event,
        "phase": label,
        "requests": result.requests,
        "events": result.events,
        "errors": result.errors,
        "seconds": result.seconds,
        "requests_per_s": result.requests / result.seconds,
        "events_per_s": result.events / result.seconds,
        "latency_ms": results.percentiles(list(result.latencies), 1000),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--workers", type=int, default=0, help="ingest worker processes (0: default)"
    )
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    phases: list[dict[str, Any]] = []
    with bench_stack(Path(".auditlog/bench"), args.partitions) as bench:
        port = free_port()
        workers = {"AUDITLOG_INGEST_WORKERS": str(args.workers)} if args.workers else {}
        bench.spawn("ingest", AUDITLOG_PORT=str(port), **workers)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        asyncio.run(closed_loop(base, bench.token, seconds=2, concurrency=16))  # warm-up
        runs = {
            "bulk /v2/log, 1000 events/request, 4 clients": lambda: closed_loop(
                base, bench.token, seconds=args.seconds, concurrency=4, bulk=1000
            ),
            f"single /v1/log, {args.concurrency} clients": lambda: closed_loop(
                base, bench.token, seconds=args.seconds, concurrency=args.concurrency
            ),
            f"paced /v1/log at {args.rate:g} requests/s": lambda: open_loop(
                base, bench.token, seconds=args.seconds, rate=args.rate
            ),
        }
        for label, run in runs.items():
            meter = CpuMeter()
            with meter.sampling():
                result = asyncio.run(run())
            print(result.summary(label))
            phases.append(_figures(label, result, meter.seconds()))
    path = results.write("bench_ingest", started, vars(args), {"phases": phases}, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
