"""auditlog and Tessera (v1.0.4, POSIX storage) side by side: the same open-loop load, same box.

    .venv/bin/python -m bench.bench_race [--rates 1000 2000 4000 ...] [--bulk-rates ...]
        [--seconds 20] [--held-p99-ms 2000] [--held-backlog-s 0.1] [--batch-max-age S]
        [--batch-min-interval S] [--ingest-linger-ms MS] [--sealers 2] [--warm-up 15]
        [--every-rate] [--skip-tessera]

Both are fed by ``bench/race`` (Go), one run per offered rate, with the same realistic events
(``auditlog/loadtest/events.py``, each entry the event's JSON, ~420 bytes): Tessera's conformance
server (``cmd/conformance/posix``, built with ``go install`` at the pinned version into the user's
tools cache; its defaults: batches of 256 or 1 s, a checkpoint every second) gets each as an entry
(``POST /add``); auditlog's ingest (its default worker processes, two sealers or ``--sealers``, the
topic's 4 partitions, the default schema) gets each as a ``/v1/log`` request, and with
``--bulk-rates`` in ``/v2/log`` requests of ``--bulk`` events, each kind in rising order, stopping
after the first rate a system fell behind at (``--every-rate`` offers them all). Both systems run
throughout and each single-event rate goes to one, then the other (which first alternates by rate),
so that both meet the same hour of the host (its speed drifts by the hour); the bulk rates come
last, auditlog's alone. Before them each system gets ``--warm-up`` seconds (15) of 2,000 entries/s,
unmeasured, so that no measured run pays for Kafka's JVM compiling its hot paths. The system not
under load stays up, idle, meanwhile, and every run of either starts once the box is idle (under
10 % busy for 2 s, waiting at most two minutes): what a run leaves behind (autovacuum, checkpoints,
a backlog draining) would otherwise land on the next one; each auditlog run also waits for its
sealers' consumer group to be whole. Latency runs from each entry's due time: to the first Tessera
checkpoint seen that covers it (polled every 10 ms), or to the auditlog checkpoint that sealed it
(read from the database afterwards; each event carries its due time as its ``timestamp``). A rate is
*held* when every request succeeded, no more than ``--held-backlog-s`` (0.1 s) of the schedule was
still queued when it ended (a system falling behind leaves thousands of requests there; one that
keeps up, none or a busy moment's hundred), and p99 stayed within ``--held-p99-ms`` (Tessera's
one-second checkpoint interval puts its own floor near 1.5 s). CPU per event is every process of
each system together (Tessera's server; ingest, sealers, Kafka and PostgreSQL), the load generator
apart, over the events accepted (answered 2xx): an auditlog run is measured until they are all
sealed. Prints both systems' figures and the ratios of their held rates; writes
bench/results/bench_race-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg

from auditlog.cli.keys import write_signing_key
from auditlog.loadtest.events import EventGenerator
from bench import results
from bench.harness import (
    Bench,
    CpuMeter,
    bench_stack,
    build_go_tool,
    free_port,
    group_settled,
    percentile,
    postgres_settings,
    wait_http,
    wait_idle,
)
from bench.sealer_measure import SealTimes, count_events, phase_figures, phase_report, scrape

TESSERA: Final = "github.com/transparency-dev/tessera/cmd/conformance/posix"
TESSERA_VERSION: Final = "v1.0.4"
WORKDIR: Final = Path(".auditlog/bench")
SEALERS: Final = 2
WARM_UP_RATE: Final = 2000
# Longest wait for the box to go idle before a run (then it runs anyway; the wait is recorded).
IDLE_WITHIN: Final = 120.0
SYSTEM_GROUPS: Final = {
    "tessera": ("tessera",),
    "auditlog": ("ingest", "sealer", "kafka", "postgres"),
}


def tessera_server() -> Path:
    """Tessera's POSIX conformance server, built once into the user's tools cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    directory = cache / "auditlog" / "tools" / f"tessera-posix-{TESSERA_VERSION}"
    binary = directory / "posix"
    if not binary.exists():
        directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOBIN": str(directory), "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
        subprocess.run(["go", "install", f"{TESSERA}@{TESSERA_VERSION}"], env=env, check=True)
    return binary


def write_corpus(path: Path, count: int) -> Path:
    generator = EventGenerator(11)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(count):
            out.write(json.dumps(generator.event(), ensure_ascii=False) + "\n")
    return path


def race(
    binary: Path, target: str, url: str, corpus: Path, rate: float, seconds: float, **extra: str
) -> dict[str, Any]:
    args = [str(binary), "-target", target, "-url", url, "-corpus", str(corpus)]
    args += ["-rate", str(rate), "-duration", f"{seconds}s"]
    for name, value in extra.items():
        args += [f"-{name}", value]
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 120)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def cpu_per_event(meter: CpuMeter, system: str, events: int) -> dict[str, float]:
    """CPU per accepted event, µs, by process group. ``events`` must be the events the system
    took in: dividing a run's CPU by events it refused (503) understates the cost per event, and
    waiting for those to be sealed overstates it (the wait ends only at its deadline, and idle
    processes' CPU accrues meanwhile)."""
    events = max(events, 1)
    seconds = meter.seconds()
    groups = {g: round(seconds.get(g, 0.0) / events * 1e6, 1) for g in SYSTEM_GROUPS[system]}
    groups["total"] = round(sum(groups.values()), 1)
    groups["load_generator"] = round(seconds.get("load generator", 0.0) / events * 1e6, 1)
    return groups


def fell_behind(run: dict[str, Any], args: argparse.Namespace) -> bool:
    """More requests waiting for a free connection when the schedule ended than
    ``--held-backlog-s`` of it: the load generator counts those at one instant, and a handful
    there means a busy moment, not a system falling behind (which leaves thousands)."""
    requests_per_s = run["rate"] / int(run.get("bulk") or 1)
    return bool(run["backlog"] > requests_per_s * args.held_backlog_s)


def held(run: dict[str, Any], latency: dict[str, float], args: argparse.Namespace) -> bool:
    """Every request answered 2xx, p99 within ``--held-p99-ms``, and not fallen behind."""
    return (
        run["errors"] == 0
        and not fell_behind(run, args)
        and latency.get("p99", float("inf")) <= args.held_p99_ms
    )


@contextlib.contextmanager
def tessera_running() -> Iterator[str]:
    """Tessera's server on a fresh POSIX log; yields its URL, removes the log afterwards."""
    workdir = WORKDIR / f"tessera-{os.getpid()}"
    storage = workdir / "log"
    storage.mkdir(parents=True, exist_ok=True)
    key = workdir / "tessera.skey"
    write_signing_key(key, "race.tessera.test")
    port = free_port()
    with (workdir / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [str(tessera_server()), "--storage_dir", str(storage), "--listen",
             f"127.0.0.1:{port}", "--private_key", str(key)],
            stdout=log, stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/checkpoint")
        yield url
    finally:
        server.terminate()
        server.wait(30)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def run_tessera(
    args: argparse.Namespace, loadgen: Path, corpus: Path, url: str, rate: float
) -> dict[str, Any]:
    # What the run before left behind (autovacuum, checkpoints, a backlog) must not land here.
    idle = wait_idle(within=IDLE_WITHIN)
    meter = CpuMeter()
    with meter.sampling():
        run = race(loadgen, "tessera", url, corpus, rate, args.seconds)
    run["idle_wait_s"] = round(idle, 1)
    run["cpu_us_per_event"] = cpu_per_event(meter, "tessera", run["accepted"])
    run["held"] = held(run, run["integrated_ms"], args)
    print(
        f"tessera  {rate:>8,.0f}/s: integrated p50 {run['integrated_ms'].get('p50')} ms,"
        f" p99 {run['integrated_ms'].get('p99')} ms; errors {run['errors']}, backlog"
        f" {run['backlog']}; CPU {run['cpu_us_per_event']['total']} µs/event"
        f"{' (held)' if run['held'] else ''}",
        flush=True,
    )
    return run


async def sealed_latencies(url: str, started_us: int, seconds: float) -> dict[str, float]:
    """Due time (the event's timestamp) to the checkpoint that sealed it, ms, for one run."""
    start = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=started_us)
    conn = await asyncpg.connect(url)
    try:
        events = await conn.fetch(
            "SELECT log_id, idx, extract(epoch FROM event_time)::float8 AS due FROM events"
            " WHERE event_time >= $1 AND event_time < $2",
            start,
            start + timedelta(seconds=seconds + 1),
        )
        sealed = await SealTimes.read(conn)
    finally:
        await conn.close()
    lat = sorted((sealed(log, idx) - due) * 1000 for log, idx, due in events)
    if not lat:
        return {"count": 0}
    out = {f"p{str(p).replace('.', '_')}": round(percentile(lat, p), 1) for p in (50, 99, 99.9)}
    return {**out, "max": round(lat[-1], 1), "count": len(lat)}


def run_auditlog(
    args: argparse.Namespace,
    loadgen: Path,
    corpus: Path,
    bench: Bench,
    base: str,
    rate: float,
    bulk: int,
    sealer_ports: list[int],
) -> dict[str, Any]:
    # The sealers' group must be whole first: a rebalance left by the previous (overloaded) run
    # would be counted against this one.
    settled = asyncio.run(group_settled(bench, len(sealer_ports)))
    idle = wait_idle(within=IDLE_WITHIN)
    before = asyncio.run(count_events(bench.database_url))
    scraped = [scrape(port) for port in sealer_ports]
    meter = CpuMeter()
    with meter.sampling():
        run = race(loadgen, "auditlog", base, corpus, rate, args.seconds,
                   token=bench.token, bulk=str(bulk))  # fmt: skip
        # Sealing lags the acknowledgement: wait for every event ingest accepted (refused ones
        # never come: waiting for every one sent sat out the deadline after any 503, with the
        # meter running, which once read as a rise in CPU per event when a run fell behind).
        deadline = time.monotonic() + 120
        while asyncio.run(count_events(bench.database_url)) < before + run["accepted"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    run["sealed_ms"] = asyncio.run(
        sealed_latencies(bench.database_url, run["started_unix_us"], args.seconds)
    )
    run["cpu_us_per_event"] = cpu_per_event(meter, "auditlog", run["accepted"])
    # Each sealer's batches, seal times and event-loop lateness over the run (and its draining).
    run["sealers"] = [
        phase_figures(at_start, scrape(port))
        for port, at_start in zip(sealer_ports, scraped, strict=True)
    ]
    run["group_settled_s"] = round(settled, 1)
    run["idle_wait_s"] = round(idle, 1)
    run["held"] = held(run, run["sealed_ms"], args) and run["sealed_ms"]["count"] == run["accepted"]
    kind = "single" if bulk == 1 else f"bulk {bulk}"
    print(
        f"auditlog {rate:>8,.0f}/s ({kind}): sealed p50 {run['sealed_ms'].get('p50')} ms,"
        f" p99 {run['sealed_ms'].get('p99')} ms ({run['sealed_ms']['count']:,} of"
        f" {run['events']:,}); ack p99 {run['ack_ms'].get('p99')} ms; errors {run['errors']},"
        f" backlog {run['backlog']}; CPU {run['cpu_us_per_event']['total']} µs/event"
        f"{' (held)' if run['held'] else ''}"
        f"{f'; waited {settled:.1f} s for the sealers group first' if settled > 1 else ''}",
        flush=True,
    )
    for figures in run["sealers"]:
        print(f"  a sealer: {phase_report(figures)}", flush=True)
    return run


def interleaved(
    args: argparse.Namespace,
    loadgen: Path,
    corpus: Path,
    bench: Bench,
    base: str,
    tessera: str,
    sealer_ports: list[int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Every single-event rate offered to both systems one after the other, which one first
    alternating from rate to rate, then the bulk rates to auditlog: both see the same hour of
    this host, whose speed drifts by the hour. Rates go up; once a system fell behind at one
    (more of its schedule still queued at the end than a held run may have), its higher rates of
    that kind are skipped (unless ``--every-rate``): they would fall behind too, and leave minutes
    of work behind that the next runs, the other system's included, would meet. A run lost to a
    few errors or to its p99 does not stop the series. Returns (Tessera's runs, auditlog's, the
    runs skipped)."""
    tessera_runs: list[dict[str, Any]] = []
    auditlog_runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    failed: set[tuple[str, int]] = set()

    def offer(system: str, rate: float, bulk: int) -> None:
        if (system, bulk) in failed and not args.every_rate:
            skipped.append({"system": system, "rate": rate, "bulk": bulk})
            print(f"{system:9s} {rate:7,.0f}/s{' (bulk)' if bulk > 1 else ''}: skipped")
            return
        if system == "tessera":
            run = run_tessera(args, loadgen, corpus, tessera, rate)
            tessera_runs.append(run)
        else:
            run = run_auditlog(args, loadgen, corpus, bench, base, rate, bulk, sealer_ports)
            auditlog_runs.append(run)
        if fell_behind(run, args):
            failed.add((system, bulk))

    if args.warm_up > 0:
        # Kafka's JVM compiles its hot paths in its first seconds under load: unmeasured, so
        # that the first measured run does not pay for it (a race's first auditlog run paid
        # 74-90 µs of Kafka's CPU per event without this, 55 with it; bench/JOURNAL.md,
        # 2026-12-05). Tessera gets the same.
        print(f"warming both up: {WARM_UP_RATE:,}/s for {args.warm_up:g} s each", flush=True)
        if tessera:
            race(loadgen, "tessera", tessera, corpus, WARM_UP_RATE, args.warm_up)
        race(loadgen, "auditlog", base, corpus, WARM_UP_RATE, args.warm_up,
             token=bench.token, bulk="1")  # fmt: skip
    for i, rate in enumerate(sorted(args.rates)):
        turns = ["tessera", "auditlog"] if tessera else ["auditlog"]
        for system in turns if i % 2 == 0 else reversed(turns):
            offer(system, rate, 1)
    for rate in sorted(args.bulk_rates):
        offer("auditlog", rate, args.bulk)
    return tessera_runs, auditlog_runs, skipped


def highest_held(runs: list[dict[str, Any]], bulk: int) -> float:
    return max((r["rate"] for r in runs if r["held"] and r["bulk"] == bulk), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1000, 2000, 4000, 6000, 8000])
    parser.add_argument("--bulk-rates", type=float, nargs="*", default=[5000, 10000, 15000])
    parser.add_argument("--bulk", type=int, default=100, help="events per /v2/log request")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--held-p99-ms", type=float, default=2000)
    parser.add_argument(
        "--held-backlog-s",
        type=float,
        default=0.1,
        help="requests still queued at the schedule's end a held run may have, in seconds of it",
    )
    parser.add_argument("--corpus-events", type=int, default=50_000)
    parser.add_argument(
        "--batch-max-age", type=float, help="the sealers' AUDITLOG_BATCH_MAX_AGE (their default)"
    )
    parser.add_argument(
        "--batch-min-interval",
        type=float,
        help="the sealers' AUDITLOG_BATCH_MIN_INTERVAL (their default)",
    )
    parser.add_argument(
        "--ingest-linger-ms",
        type=int,
        help="ingest's AUDITLOG_INGEST_KAFKA_LINGER_MS (its default)",
    )
    parser.add_argument(
        "--every-rate",
        action="store_true",
        help="offer every rate, even above one the system did not hold",
    )
    parser.add_argument(
        "--skip-tessera",
        action="store_true",
        help="auditlog's side only (an A/B of its settings; no ratios)",
    )
    parser.add_argument(
        "--sealers", type=int, default=SEALERS, help="sealer processes (the topic has 4 partitions)"
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=15,
        help=f"seconds of {WARM_UP_RATE:,} entries/s offered to each system, unmeasured, first",
    )
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    loadgen = build_go_tool("race")
    if loadgen is None:
        raise SystemExit("bench_race needs go on PATH (the load generator and Tessera are Go)")
    WORKDIR.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(WORKDIR / "race-corpus.jsonl", args.corpus_events)
    figures: dict[str, Any] = {"tessera_version": TESSERA_VERSION}
    with contextlib.ExitStack() as stack:
        tessera = "" if args.skip_tessera else stack.enter_context(tessera_running())
        bench = stack.enter_context(bench_stack(WORKDIR, partitions=4))
        figures["postgres_settings"] = asyncio.run(postgres_settings(bench.database_url))
        port = free_port()
        linger = {}
        if args.ingest_linger_ms is not None:
            linger["AUDITLOG_INGEST_KAFKA_LINGER_MS"] = str(args.ingest_linger_ms)
        bench.spawn("ingest", AUDITLOG_PORT=str(port), **linger)
        batching = {
            name: str(value)
            for name, value in (
                ("AUDITLOG_BATCH_MAX_AGE", args.batch_max_age),
                ("AUDITLOG_BATCH_MIN_INTERVAL", args.batch_min_interval),
            )
            if value is not None
        }
        sealer_ports = [free_port() for _ in range(args.sealers)]
        for metrics_port in sealer_ports:
            bench.spawn("sealer", AUDITLOG_SEALER_METRICS_PORT=str(metrics_port), **batching)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        figures["tessera"], figures["auditlog"], figures["skipped"] = interleaved(
            args, loadgen, corpus, bench, base, tessera, sealer_ports
        )
    tessera_held = highest_held(figures["tessera"], 1)
    single = highest_held(figures["auditlog"], 1)
    bulk = highest_held(figures["auditlog"], args.bulk)
    figures["held"] = {"tessera": tessera_held, "auditlog_single": single,
                       "auditlog_bulk": bulk}  # fmt: skip
    figures["ratios"] = {
        name: round(rate / tessera_held, 2) if tessera_held else None
        for name, rate in (("single", single), ("bulk", bulk))
    }
    print(
        f"held (p99 ≤ {args.held_p99_ms:,.0f} ms, ≤ {args.held_backlog_s} s of the schedule"
        f" queued at its end): Tessera {tessera_held:,.0f}/s; auditlog"
        f" single {single:,.0f}/s (x{figures['ratios']['single']}), bulk of {args.bulk}"
        f" {bulk:,.0f}/s (x{figures['ratios']['bulk']})"
    )
    path = results.write("bench_race", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
