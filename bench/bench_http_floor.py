"""What the HTTP path costs before any ingest work: CPU per request of one uvicorn process.

    .venv/bin/python -m bench.bench_http_floor [--rate 2000] [--seconds 10]
        [--apps bare direct routed] [--bulk 1]

Serves each app of ``bench/http_floor_apps.py`` (``bare`` ASGI, the services' shell with a
directly called route, the same through Starlette's router) in one uvicorn worker (uvloop,
httptools, as the services run) and offers it single-event ``/v1/log`` requests from
``bench/race`` (Go) at a fixed rate, open loop, with the race's realistic events. Reports the
server process's CPU per request (user + system, from /proc) and the latency percentiles; writes
bench/results/bench_http_floor-*.json.

``--bulk N`` sends ``/v2/log`` requests of N events instead (``--rate`` counts events), which only
``bare`` answers (it answers any path): what the load generator itself adds to a bulk run's
latency, with nothing behind the server.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import results
from bench.bench_race import WORKDIR, write_corpus
from bench.harness import build_go_tool, free_port, process_cpu

APPS = ("bare", "direct", "routed")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        else:
            return


def serve(app: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", f"bench.http_floor_apps:{app}",
               "--port", str(port), "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning", "--no-proxy-headers"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}"


def measure(
    loadgen: Path, corpus: Path, app: str, rate: float, seconds: float, bulk: int = 1
) -> dict[str, Any]:
    proc, url = serve(app)
    try:
        args = [str(loadgen), "-target", "auditlog", "-url", url, "-corpus", str(corpus),
                "-token", "bench", "-bulk", str(bulk)]  # fmt: skip
        subprocess.run([*args, "-rate", "500", "-duration", "2s"], capture_output=True, check=True)
        before = process_cpu(proc.pid)
        done = subprocess.run(
            [*args, "-rate", str(rate), "-duration", f"{seconds}s"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        cpu = process_cpu(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(30)
    run = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "app": app,
        "bulk": bulk,
        "requests": run["requests"],
        "errors": run["errors"],
        "backlog": run["backlog"],
        "latency_ms": run["ack_ms"],
        "cpu_us_per_request": round(cpu / max(run["requests"], 1) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--apps", nargs="+", choices=APPS, default=list(APPS))
    parser.add_argument(
        "--bulk", type=int, default=1, help="events per request (/v2/log when more than 1)"
    )
    results.add_option(parser)
    args = parser.parse_args()
    if args.bulk > 1 and args.apps != ["bare"]:
        parser.error("--bulk above 1 needs --apps bare: the shell apps serve /v1/log only")
    started = results.now()
    loadgen = build_go_tool("race")
    if loadgen is None:
        raise SystemExit("bench_http_floor needs go on PATH (the load generator is Go)")
    WORKDIR.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(WORKDIR / "floor-corpus.jsonl", 20_000)
    runs = []
    for app in args.apps:
        run = measure(loadgen, corpus, app, args.rate, args.seconds, args.bulk)
        print(
            f"{app:>7}: {run['cpu_us_per_request']} µs of CPU per request; p50"
            f" {run['latency_ms'].get('p50')} ms, p99 {run['latency_ms'].get('p99')} ms;"
            f" errors {run['errors']}, backlog {run['backlog']}",
            flush=True,
        )
        runs.append(run)
    path = results.write("bench_http_floor", started, vars(args), {"runs": runs}, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
