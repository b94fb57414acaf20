"""What the pipeline benchmarks share: the local stack, a scratch database and topic, services.

Every benchmark runs with one command against the project's own local stack (started when it is
not running, and stopped again at the end in that case), in a database and topic of its own that
are dropped afterwards, so figures never mix with development data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from auditlog.cli.keys import write_signing_key
from auditlog.devstack import stack
from auditlog.kafka.clients import dlq_topic, ensure_topics
from auditlog.pg import db
from auditlog.pg.tokens import create_token
from sealer.settings import DEFAULT_GROUP_ID


@dataclass
class Bench:
    kafka: str
    database_url: str
    topic: str
    token: str
    key_file: Path
    workdir: Path
    procs: list[subprocess.Popen[bytes]]
    logs: dict[int, Path] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "AUDITLOG_KAFKA_BOOTSTRAP": self.kafka,
            "AUDITLOG_DATABASE_URL": self.database_url,
            "AUDITLOG_TOPIC": self.topic,
            "AUDITLOG_ORIGIN": "bench.auditlog.test",
            "AUDITLOG_SIGNING_KEY_FILE": str(self.key_file),
            "AUDITLOG_LOG_LEVEL": "warning",
            **extra,
        }

    def log_path(self, proc: subprocess.Popen[bytes]) -> Path:
        """Where ``spawn`` sent the output of ``proc``."""
        return self.logs[proc.pid]

    def spawn(self, command: str, **extra: str) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{command}-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "auditlog.cli", command],
                env=self.env(**extra),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        self.logs[proc.pid] = log
        return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


GO_TOOLS_CACHE = Path(".auditlog/cache/go")


def build_go_tool(name: str) -> Path | None:
    """``bench/<name>`` (a Go program) built once per version of its sources; None without
    ``go``, so a bench can fall back to its Python client and say so.

    The binary is named by a hash of the sources, so an edit rebuilds it; it is renamed into
    place only when complete, so an interrupted build is never taken for a good one.
    """
    go = shutil.which("go")
    if go is None:
        return None
    source = Path(__file__).parent / name
    digest = hashlib.sha256()
    for path in sorted(source.iterdir()):
        if path.suffix == ".go" or path.name in ("go.mod", "go.sum"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    binary = GO_TOOLS_CACHE / f"{name}-{digest.hexdigest()[:16]}"
    if not binary.exists():
        GO_TOOLS_CACHE.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        # GOTOOLCHAIN=local: build with the installed Go rather than fetch the one go.mod names.
        subprocess.run(
            [go, "build", "-trimpath", "-o", str(partial.resolve()), "."],
            cwd=source,
            env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"},
            check=True,
        )
        partial.rename(binary)
        for old in GO_TOOLS_CACHE.glob(f"{name}-*"):
            if old != binary:
                old.unlink()
        print(f"{name}: built {binary}")
    return binary


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) a process has spent so far, from ``/proc``; OSError when
    it is not a process of this machine (or is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by groups of processes between two readings (Linux ``/proc``).

    Groups: ``sealer``, ``ingest``, ``query`` and ``serve`` (processes running ``auditlog.cli
    <command>``, and their worker processes, which run a command line of multiprocessing's),
    ``tessera`` (Tessera's server, in bench_race), ``postgres`` (every process of
    the ``postgres`` user: backends, WAL writer, checkpointer, autovacuum), ``kafka`` (the JVM of
    the local broker), ``load generator`` (``bench/kafkaload``, ``bench/race``) and ``bench``
    (this process). A
    process that exits between the readings counts up to its last sighting, so read often
    enough (:meth:`sample`, or :meth:`sampling` around a block) for short-lived ones.
    """

    def __init__(self) -> None:
        self._first: dict[int, tuple[str, float]] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._postgres_uid = _uid("postgres")

    def _group(self, pid: int) -> str | None:
        if pid == os.getpid():
            return "bench"
        try:
            if os.stat(f"/proc/{pid}").st_uid == self._postgres_uid:
                return "postgres"
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        for service in (b"sealer", b"ingest", b"query", b"serve"):
            if b"auditlog.cli\0" + service in cmdline:
                return service.decode()
        if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            # A service's worker process: its parent's group.
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            parent = int(stat[1])
            return self._group(parent) if parent > 1 else None
        program = cmdline.split(b"\0")[0]
        if b"/kafkaload-" in program or b"/race-" in program:  # built as <name>-<source hash>
            return "load generator"
        if b"/tessera-posix-" in program:  # Tessera's server, for bench_race
            return "tessera"
        if cmdline.startswith(b"/") and b"java" in cmdline.split(b"\0")[0] and b"kafka" in cmdline:
            return "kafka"
        return None

    def sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            group = self._group(pid)
            if group is None:
                continue
            try:
                seconds = process_cpu(pid)
            except OSError:
                continue
            self._first.setdefault(pid, (group, seconds))
            self._last[pid] = (group, seconds)

    @contextlib.contextmanager
    def sampling(self, every: float = 0.5) -> Iterator[None]:
        """Sample in a thread while the block runs (it may block on a subprocess)."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(every):
                self.sample()

        self.sample()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.sample()

    def seconds(self) -> dict[str, float]:
        """CPU seconds per group since the first sample."""
        out: dict[str, float] = {}
        for pid, (group, last) in self._last.items():
            out[group] = out.get(group, 0.0) + last - self._first[pid][1]
        return out


def _busy_and_total() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_idle(busy_below: float = 0.1, window: float = 2.0, within: float = 300.0) -> float:
    """Seconds until the whole machine used less than ``busy_below`` of its CPUs over one
    ``window`` (or ``within`` passed): after a bulk load PostgreSQL's checkpointer and the
    kernel write back gigabytes for minutes, and a latency measured meanwhile measures that."""
    began = time.monotonic()
    while True:
        busy0, total0 = _busy_and_total()
        time.sleep(window)
        busy1, total1 = _busy_and_total()
        if total1 > total0 and (busy1 - busy0) / (total1 - total0) < busy_below:
            return time.monotonic() - began
        if time.monotonic() - began > within:
            return time.monotonic() - began


def _uid(user: str) -> int | None:
    try:
        import pwd  # noqa: PLC0415 - POSIX only

        return pwd.getpwnam(user).pw_uid
    except (ImportError, KeyError):
        return None


# The PostgreSQL settings a pipeline result depends on: recorded in it, so that a run on a
# cluster tuned otherwise (or changed with ALTER SYSTEM for an experiment) says so itself.
PG_SETTINGS = (
    "server_version", "shared_buffers", "max_wal_size", "checkpoint_timeout",
    "checkpoint_completion_target", "wal_compression", "synchronous_commit", "full_page_writes",
    "backend_flush_after", "autovacuum", "autovacuum_naptime", "gin_pending_list_limit",
)  # fmt: skip


async def postgres_settings(url: str) -> dict[str, str]:
    """:data:`PG_SETTINGS` as the server reports them, each with its unit (``8GB``, ``900s``)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
            list(PG_SETTINGS),
        )
    finally:
        await conn.close()
    found = {r["name"]: _with_unit(r["setting"], r["unit"]) for r in rows}
    return {name: found[name] for name in PG_SETTINGS if name in found}


def _with_unit(setting: str, unit: str | None) -> str:
    """pg_settings' value in the unit an operator writes: 1024 of ``8kB`` is ``8MB``."""
    if unit is None:
        return setting
    scale = {"8kB": 8 * 1024, "kB": 1024, "MB": 1024**2, "B": 1}.get(unit)
    if scale is None or not setting.isdigit():
        return f"{setting}{unit}"  # s, ms, min, -1 (off): as they are
    size = int(setting) * scale
    for suffix, factor in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if size % factor == 0 and size >= factor:
            return f"{size // factor}{suffix}"
    return f"{size}B"


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _setup(admin_url: str, name: str, kafka: str, topic: str, partitions: int) -> str:
    conn = await asyncpg.connect(await db.create_database(admin_url, name))
    try:
        token, _ = await create_token(conn, "bench", {"log", "search"})
    finally:
        await conn.close()
    await ensure_topics(kafka, topic, partitions)
    return token


async def _teardown(admin_url: str, name: str, kafka: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.delete_topics([topic, dlq_topic(topic)])
    finally:
        await admin.close()
    await db.drop_database(admin_url, name)


@contextlib.contextmanager
def bench_stack(workdir: Path, partitions: int) -> Iterator[Bench]:
    cfg = stack.StackConfig.from_env()
    started = not stack.is_running(cfg)
    if started:
        stack.start(cfg)
    suffix = secrets.token_hex(3)
    name, topic = f"auditlog_bench_{suffix}", f"audit.bench-{suffix}"
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / f"bench-{suffix}.skey"
    write_signing_key(key, "bench.auditlog.test")
    token = asyncio.run(_setup(cfg.database_url, name, cfg.kafka_bootstrap, topic, partitions))
    bench = Bench(
        cfg.kafka_bootstrap, db.database_url(cfg.database_url, name), topic, token, key, workdir, []
    )
    try:
        yield bench
    finally:
        for proc in bench.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in bench.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        asyncio.run(_teardown(cfg.database_url, name, cfg.kafka_bootstrap, topic))
        key.unlink(missing_ok=True)
        key.with_suffix(".vkey").unlink(missing_ok=True)
        if started:
            stack.stop(cfg)


async def group_settled(bench: Bench, members: int, within: float = 60) -> float:
    """Seconds until the sealers' consumer group is Stable with ``members`` members: a
    rebalance during a measured phase (a sealer joining late, or one the phase before starved
    of its heartbeats) would be measured as seconds of latency that a steady deployment does
    not have."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.kafka)
    await admin.start()
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < within:
            for response in await admin.describe_consumer_groups([DEFAULT_GROUP_ID]):
                for group in response.groups:
                    state, joined = group[2], group[5]
                    if state == "Stable" and len(joined) == members:
                        return time.perf_counter() - began
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise SystemExit(f"the sealers' group did not settle with {members} members in {within} s")


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


class Stalls:
    """What a service wrote to its log about stalls since the last call (the warnings in
    ``EVENTS``, see ``auditlog.runtime.stalls`` and ``query.heads``), with the time the
    process waited for a CPU (``/proc/<pid>/schedstat``) and the machine's CPU and I/O pressure
    (PSI)."""

    EVENTS = ("gc_pause", "event_loop_stall", "slow_head_read")

    def __init__(self, log: Path, pid: int) -> None:
        self.log = log
        self.pid = pid
        self.offset = 0
        self.counters = self._counters()
        self.figures: dict[str, object] = {}  # what the last report said, for bench/results

    def _counters(self) -> dict[str, float]:
        counters: dict[str, float] = {}
        with contextlib.suppress(OSError, ValueError, IndexError):
            ran, waited = Path(f"/proc/{self.pid}/schedstat").read_text().split()[:2]
            counters["ran"], counters["waited"] = int(ran) / 1e9, int(waited) / 1e9
        for kind in ("cpu", "io"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                some = Path(f"/proc/pressure/{kind}").read_text().splitlines()[0]
                counters[kind] = int(some.rsplit("total=", 1)[1]) / 1e6
        return counters

    def report(self) -> str:
        with self.log.open("rb") as f:
            f.seek(self.offset)
            text = f.read()
        self.offset += len(text)
        found: dict[str, list[float]] = {e: [] for e in self.EVENTS}
        for line in text.splitlines():
            for event, values in found.items():
                if f'"{event}"'.encode() in line:
                    with contextlib.suppress(ValueError, KeyError):
                        values.append(float(json.loads(line)["ms"]))
        before, self.counters = self.counters, self._counters()
        delta = {k: self.counters[k] - before[k] for k in self.counters if k in before}
        self.figures = {
            "stalls_ms": {event: sorted(v) for event, v in found.items()},
            "service_ran_s": delta.get("ran"),
            "service_waited_for_cpu_s": delta.get("waited"),
            "psi_some_cpu_s": delta.get("cpu"),
            "psi_some_io_s": delta.get("io"),
        }
        parts = [
            f"{len(v)} {event} >= 50 ms" + (f" (longest {max(v):.0f} ms)" if v else "")
            for event, v in found.items()
        ]
        if "ran" in delta:
            parts.append(
                f"service ran {delta['ran']:.1f} s, waited for a CPU {delta['waited']:.2f} s"
            )
        if "cpu" in delta:
            parts.append(f"PSI some: cpu {delta['cpu']:.2f} s, io {delta.get('io', 0):.2f} s")
        return "; ".join(parts)
