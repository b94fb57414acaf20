"""Shared fixtures: real Kafka and PostgreSQL for the integration and e2e tiers.

Where the services come from, in order:
1. ``AUDITLOG_KAFKA_BOOTSTRAP`` and ``AUDITLOG_DATABASE_URL`` when both are set;
2. testcontainers, when a Docker engine answers;
3. the project's local stack (``auditlog stack start``), stopped again at the end of the session
   if this session started it.

Each session works in its own database and its own topic, both removed at the end, so runs never
see each other's data. Unit tests use none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import asyncpg

    from auditlog.core.note import NoteSigner

# Fuzz and hostile-input runs report here, whatever their kind: name -> (inputs tried, 5xx
# answers or crashes). pytest_terminal_summary prints one line per name, so the counts show in
# every run, without -s.
FUZZ_TALLIES: dict[str, tuple[int, int]] = {}


def record_fuzz(name: str, tried: int, failures: int) -> None:
    """Add a run's counts to the summary line of ``name``."""
    before = FUZZ_TALLIES.get(name, (0, 0))
    FUZZ_TALLIES[name] = (before[0] + tried, before[1] + failures)


# The sealer's hostile-record corpus (tests/integration/test_sealer_hostile.py): name ->
# (records tried, dead-lettered with the expected reason, sealed as they should be, crashes).
SEALER_TALLIES: dict[str, tuple[int, int, int, int]] = {}


# Figures the drills measure (recovery times), by drill; written as JSON to the file
# AUDITLOG_DRILL_FIGURES names when set (bench/bench_drills.py sets it and keeps them).
DRILL_FIGURES: dict[str, dict[str, object]] = {}
DRILL_FIGURES_FILE = "AUDITLOG_DRILL_FIGURES"


def record_drill(name: str, **figures: object) -> None:
    """Keep what drill ``name`` measured (also printed by the drill itself)."""
    DRILL_FIGURES.setdefault(name, {}).update(figures)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(DRILL_FIGURES_FILE)
    if path and DRILL_FIGURES:
        Path(path).write_text(json.dumps(DRILL_FIGURES, indent=1) + "\n", encoding="utf-8")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, (tried, failures) in sorted(FUZZ_TALLIES.items()):
        terminalreporter.write_line(f"{name}: {tried} tried, {failures} 5xx or crashes")
    for name, (tried, dead, sealed, crashes) in sorted(SEALER_TALLIES.items()):
        terminalreporter.write_line(
            f"{name}: {tried} tried, {dead} dead-lettered, {sealed} sealed, {crashes} crashes"
        )


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    database_url: str  # the session's own database
    topic: str


def _docker_works() -> bool:
    """Does a Docker engine answer on DOCKER_HOST's unix socket?

    Asked with a raw socket rather than docker-py, whose failed connections leak sockets that
    the strict warning filter would report.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return False  # remote engines: set AUDITLOG_KAFKA_BOOTSTRAP/DATABASE_URL instead
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(host.removeprefix("unix://"))
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"OK" in sock.recv(1024)
    except OSError:
        return False


@contextlib.contextmanager
def _infrastructure() -> Iterator[tuple[str, str]]:
    kafka = os.environ.get("AUDITLOG_KAFKA_BOOTSTRAP")
    database = os.environ.get("AUDITLOG_DATABASE_URL")
    if kafka and database:
        yield kafka, database
        return
    if _docker_works():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with KafkaContainer().with_kraft() as k, PostgresContainer("postgres:16") as pg:
            url = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
            yield k.get_bootstrap_server(), url
        return
    from auditlog.devstack import stack

    cfg = stack.StackConfig.from_env()
    started = not stack.is_running(cfg)
    if started:
        stack.start(cfg)
    try:
        yield cfg.kafka_bootstrap, cfg.database_url
    finally:
        if started:
            stack.stop(cfg)


async def _create_database(admin_url: str, name: str, migrated_to: int | None = None) -> str:
    from auditlog.pg import db

    return await db.create_database(admin_url, name, up_to=migrated_to)


async def _drop_database(admin_url: str, name: str) -> None:
    from auditlog.pg import db

    await db.drop_database(admin_url, name)


@contextlib.contextmanager
def scratch_database(admin_url: str, name: str, migrated_to: int | None = None) -> Iterator[str]:
    """A new database ``name`` on ``admin_url``'s server, dropped on exit; yields its URL. Its
    schema is the latest, or that of migration ``migrated_to`` (upgrade tests)."""
    url = asyncio.run(_create_database(admin_url, name, migrated_to))
    try:
        yield url
    finally:
        asyncio.run(_drop_database(admin_url, name))


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the database at ``url``, closed on exit."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def insert_event(
    conn: asyncpg.Connection, log_id: str, idx: int, received: datetime, message: str
) -> None:
    """An ``events`` row of ``log_id`` holding only a message (its envelope the message's
    bytes), as the search tests need them; the partition for ``received`` must exist."""
    await conn.execute(
        "INSERT INTO events (log_id, idx, event_hash, envelope, received_at, kafka_offset,"
        " message) VALUES ($1, $2, $3, $4, $5, $2, $6)",
        log_id,
        idx,
        hashlib.sha256(f"{log_id}/{idx}".encode()).digest(),
        message.encode(),
        received,
        message,
    )


@pytest.fixture
def note_signer(tmp_path: Path) -> NoteSigner:
    """A checkpoint signer with a fresh key (for logs built by bench.query_data.build_log)."""
    from auditlog.cli.keys import write_signing_key
    from auditlog.core.note import NoteSigner

    key = tmp_path / "log.skey"
    write_signing_key(key, "tests.auditlog.test")
    return NoteSigner.from_skey(key.read_text().strip())


def migrate_database(url: str) -> None:
    """``auditlog migrate`` on the database at ``url`` (a test's own PostgreSQL)."""
    import asyncpg

    from auditlog.pg import db

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(run())


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL whatever is still running after 20 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def start_service(
    command: str, env: dict[str, str], log: Path, ready: str, timeout: float = 60
) -> subprocess.Popen[bytes]:
    """``auditlog <command>`` with ``env``, its output in ``log``, once ``ready`` (a URL)
    answers 200; fails the test with the log's tail if it exits or does not answer in time."""
    import httpx

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", command], env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(ready, timeout=2).status_code == 200:
                return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"auditlog {command} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    from auditlog.kafka.clients import dlq_topic, ensure_topics

    suffix = secrets.token_hex(4)
    topic = f"audit.test-{suffix}"
    name = f"auditlog_test_{suffix}"
    with _infrastructure() as (kafka, admin_url), scratch_database(admin_url, name) as url:
        asyncio.run(ensure_topics(kafka, topic, partitions=2))
        try:
            yield Services(kafka, url, topic)
        finally:
            asyncio.run(delete_topics(kafka, [topic, dlq_topic(topic)]))
