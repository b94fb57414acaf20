"""Events per second one forwarder process delivers from sealed logs to syslog and to webhooks.

    .venv/bin/python -m bench.bench_forward [--events 100000] [--partitions 2] [--batch 500]

Seals ``--events`` realistic events (``auditlog/loadtest/events.py``, published with the Python
producer library, sealed by one sealer) into a scratch database and topic of the local stack,
then, for each destination in turn, starts one ``auditlog forward`` process with that single
destination (``start = "beginning"``) and times it from start until its cursors reach every
log's size (read from ``forward_cursors`` ten times a second), with the CPU seconds the
forwarder, the receiver and PostgreSQL spent meanwhile:

* ``syslog``: Debian's rsyslog (imtcp, plain TCP, octet-counted) writing every message to a file,
  run in the foreground on a port of its own (``scripts/forward-tools.sh`` installs it);
* ``webhook``: an aiohttp receiver in this process that checks every batch's HMAC-SHA256
  signature and counts its events.

Each run ends with a check that the destination received every sealed event (counted by the
receiver), so a fast but lossy run cannot pass. The figures include the forwarder's start
(under a second). Forwarder, receiver, PostgreSQL and this process share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from auditlog.loadtest.events import EventGenerator
from auditlog.producer import AuditProducer
from bench import results
from bench.harness import Bench, bench_stack, free_port, process_cpu
from bench.sealer_measure import wait_sealed

SECRET = b"bench-secret"


class Hook:
    """The webhook receiver: verifies each signature, counts the events."""

    def __init__(self) -> None:
        self.events = 0
        self.bad = 0
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-Auditlog-Timestamp"]
        want = "v1=" + hmac.new(SECRET, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, request.headers["X-Auditlog-Signature"]):
            self.bad += 1
            return web.Response(status=401)
        self.events += len(orjson.loads(body)["events"])
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def start_rsyslog(workdir: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(binary).exists():
        raise SystemExit("rsyslogd is missing: run scripts/forward-tools.sh")
    port = free_port()
    out = workdir / "rsyslog-out.log"
    conf = workdir / "rsyslog.conf"
    conf.write_text(
        f'global(maxMessageSize="256k" workDirectory="{workdir}")\n'
        'module(load="imtcp")\n'
        f'input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="out")\n'
        'template(name="raw" type="string" string="%structured-data% %msg%\\n")\n'
        f'ruleset(name="out") {{ action(type="omfile" file="{out}" template="raw") }}\n'
    )
    proc = subprocess.Popen(
        [binary, "-n", "-f", str(conf), "-i", str(workdir / "rsyslogd.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(1.0)
    if proc.poll() is not None:
        raise SystemExit(f"rsyslogd exited with {proc.returncode}")
    return proc, port, out


async def seal(bench: Bench, n: int) -> float:
    sealer = bench.spawn("sealer")
    generator = EventGenerator(seed=1)
    async with AuditProducer(bench.kafka, bench.topic) as producer:
        events = iter(generator)
        for start in range(0, n, 1000):
            await producer.log_many([next(events) for _ in range(min(1000, n - start))])
    seconds = await wait_sealed(bench.database_url, n, within=600)
    sealer.send_signal(signal.SIGTERM)
    sealer.wait(60)
    return seconds


async def delivered(url: str, name: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(next_idx), 0) FROM forward_cursors WHERE destination = $1",
                name,
            )
        )
    finally:
        await conn.close()


def postgres_cpu() -> float:
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                total += process_cpu(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return total


async def forward(
    bench: Bench, name: str, destination: str, n: int, receiver_pid: int | None
) -> dict[str, Any]:
    file = bench.workdir / f"{name}.toml"
    file.write_text(destination)
    receiver_before = process_cpu(receiver_pid) if receiver_pid else 0.0
    pg_before = postgres_cpu()
    began = time.perf_counter()
    proc = bench.spawn(
        "forward",
        AUDITLOG_FORWARD_DESTINATIONS_FILE=str(file),
        AUDITLOG_FORWARD_POLL_INTERVAL="0.05",
        BENCH_SECRET=SECRET.decode(),
    )
    while (done := await delivered(bench.database_url, name)) < n:
        if proc.poll() is not None:
            raise SystemExit(f"the forwarder exited: {bench.log_path(proc).read_text()[-2000:]}")
        if time.perf_counter() - began > 900:
            raise SystemExit(f"{name}: only {done} of {n} delivered in 900 s")
        await asyncio.sleep(0.1)
    seconds = time.perf_counter() - began
    forwarder_cpu = process_cpu(proc.pid)
    figures = {
        "events": n,
        "seconds_s": round(seconds, 3),
        "events_per_s": round(n / seconds),
        "forwarder_cpu_s": round(forwarder_cpu, 3),
        "forwarder_cpu_us_per_event": round(forwarder_cpu / n * 1e6, 2),
        "postgres_cpu_s": round(postgres_cpu() - pg_before, 3),
    }
    if receiver_pid:
        figures["receiver_cpu_s"] = round(process_cpu(receiver_pid) - receiver_before, 3)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return figures


def run(args: argparse.Namespace) -> dict[str, Any]:
    # bench_stack sets up and tears down with asyncio.run of its own: entered outside the loop.
    workdir = Path(args.workdir).resolve()  # rsyslog wants absolute paths
    with bench_stack(workdir, args.partitions) as bench:
        return asyncio.run(_measure(args, bench, workdir))


async def _measure(args: argparse.Namespace, bench: Bench, workdir: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    figures["seal_seconds_s"] = round(await seal(bench, args.events), 3)
    rsyslog, port, out = start_rsyslog(workdir)
    try:
        syslog = await forward(
            bench,
            "bench-syslog",
            f'[[destination]]\nname = "bench-syslog"\nkind = "syslog"\n'
            f'host = "127.0.0.1"\nport = {port}\nbatch_size = {args.batch}\n',
            args.events,
            rsyslog.pid,
        )
        deadline = time.monotonic() + 60
        while (lines := out.read_bytes().count(b"\n")) < args.events:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        syslog["received"] = lines
        figures["syslog"] = syslog
    finally:
        rsyslog.terminate()
        rsyslog.wait(30)
    hook = Hook()
    await hook.start()
    try:
        webhook = await forward(
            bench,
            "bench-webhook",
            f'[[destination]]\nname = "bench-webhook"\nkind = "webhook"\n'
            f'url = "http://127.0.0.1:{hook.port}/hook"\nsecret_env = "BENCH_SECRET"\n'
            f"batch_size = {args.batch}\n",
            args.events,
            None,
        )
        webhook["received"] = hook.events
        webhook["bad_signatures"] = hook.bad
        figures["webhook"] = webhook
    finally:
        await hook.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workdir", default=".auditlog/bench-forward")
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    figures = run(args)
    ok = (
        all(figures[k]["received"] >= args.events for k in ("syslog", "webhook"))
        and not figures["webhook"]["bad_signatures"]
    )
    for kind in ("syslog", "webhook"):
        f = figures[kind]
        print(
            f"{kind}: {f['events_per_s']} events/s ({f['events']} in {f['seconds_s']} s),"
            f" forwarder {f['forwarder_cpu_us_per_event']} µs CPU/event, received {f['received']}"
        )
    path = results.write(
        "bench_forward", started, vars(args), figures, args.results_dir,
        status="ok" if ok else "failed",
    )  # fmt: skip
    print(f"result: {path}")


if __name__ == "__main__":
    main()
