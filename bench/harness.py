"""What the pipeline benchmarks share: the local stack, a scratch database and topic, services.

Every benchmark runs with one command against the project's own local stack (started when it is
not running, and stopped again at the end in that case), in a database and topic of its own that
are dropped afterwards, so figures never mix with development data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from auditlog import db, stack
from auditlog.cli import write_signing_key
from auditlog.kafka import dlq_topic, ensure_topics
from auditlog.tokens import create_token


@dataclass
class Bench:
    kafka: str
    database_url: str
    topic: str
    token: str
    key_file: Path
    workdir: Path
    procs: list[subprocess.Popen[bytes]]

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
        return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _setup(admin_url: str, name: str, kafka: str, topic: str, partitions: int) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(_with_db(admin_url, name))
    try:
        await db.migrate(conn)
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
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


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
        cfg.kafka_bootstrap, _with_db(cfg.database_url, name), topic, token, key, workdir, []
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
        if started:
            stack.stop(cfg)


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")
