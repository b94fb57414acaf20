"""Ingest throughput and latency through real Kafka, one ``auditlog ingest``.

    .venv/bin/python -m bench.bench_ingest [--seconds 10] [--concurrency 64] [--rate 1000]
        [--workers N] [--bulk-clients 4] [--max-in-flight N] [--phases bulk single paced]

Phases: bulk (`/v2/log`, 1,000 events a request, `--bulk-clients` closed-loop clients), single
events (`/v1/log`, closed loop with `--concurrency` clients), and a paced open loop at `--rate`
requests/s for latency. ``--workers`` sets AUDITLOG_INGEST_WORKERS (default: the service's own,
one per CPU), ``--max-in-flight`` AUDITLOG_INGEST_MAX_IN_FLIGHT (default: the service's own):
with more bulk clients than the bound admits, the rest are answered 503 (counted in the phase's
``statuses``), which is how the bound's size is chosen (docs/ingest.md). Each phase
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
    parser.add_argument("--bulk-clients", type=int, default=4)
    parser.add_argument(
        "--max-in-flight", type=int, default=0, help="events in flight per worker (0: default)"
    )
    parser.add_argument(
        "--phases", nargs="+", choices=("bulk", "single", "paced"),
        default=["bulk", "single", "paced"],
    )  # fmt: skip
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    phases: list[dict[str, Any]] = []
    with bench_stack(Path(".auditlog/bench"), args.partitions) as bench:
        port = free_port()
        extra = {"AUDITLOG_INGEST_WORKERS": str(args.workers)} if args.workers else {}
        if args.max_in_flight:
            extra["AUDITLOG_INGEST_MAX_IN_FLIGHT"] = str(args.max_in_flight)
        bench.spawn("ingest", AUDITLOG_PORT=str(port), **extra)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        asyncio.run(closed_loop(base, bench.token, seconds=2, concurrency=16))  # warm-up
        runs = {
            "bulk": (
                f"bulk /v2/log, 1000 events/request, {args.bulk_clients} clients",
                lambda: closed_loop(
                    base, bench.token, seconds=args.seconds, concurrency=args.bulk_clients,
                    bulk=1000,
                ),
            ),
            "single": (
                f"single /v1/log, {args.concurrency} clients",
                lambda: closed_loop(
                    base, bench.token, seconds=args.seconds, concurrency=args.concurrency
                ),
            ),
            "paced": (
                f"paced /v1/log at {args.rate:g} requests/s",
                lambda: open_loop(base, bench.token, seconds=args.seconds, rate=args.rate),
            ),
        }  # fmt: skip
        for label, run in (runs[phase] for phase in args.phases):
            meter = CpuMeter()
            with meter.sampling():
                result = asyncio.run(run())
            print(result.summary(label))
            phases.append(_figures(label, result, meter.seconds()))
    path = results.write("bench_ingest", started, vars(args), {"phases": phases}, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
