"""`auditlog stack` against real Kafka and PostgreSQL servers.

The stack here has its own home and ports, so a developer's stack (or the one other integration
tests share) on the default ports is never touched, and this one is always stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from auditlog.devstack import stack
from auditlog.devstack.config import StackConfig
from tests.integration.own_stack import separate_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    home = tmp_path_factory.mktemp("stack")
    began = time.monotonic()
    with separate_stack(home, kafka_port=29092, controller_port=29093, pg_port=54339) as cfg:
        print(f"cold start took {time.monotonic() - began:.1f}s")
        yield cfg


def test_status_reports_both_servers_running(started: StackConfig) -> None:
    kafka, pg = stack.status(started)
    assert (kafka.name, kafka.running) == ("kafka", True)
    assert (pg.name, pg.running) == ("postgres", True)
    assert kafka.pid is not None
    assert pg.pid is not None
    assert stack.is_running(started)


def test_start_again_is_a_quick_no_op(started: StackConfig) -> None:
    before = [component.pid for component in stack.status(started)]
    lines: list[str] = []
    began = time.monotonic()
    stack.start(started, echo=lines.append)
    assert time.monotonic() - began < 5
    assert len(lines) == 1
    assert lines[0].startswith("already running")
    assert [component.pid for component in stack.status(started)] == before


def test_kafka_accepts_tcp_connections(started: StackConfig) -> None:
    with socket.create_connection(("127.0.0.1", started.kafka_port), timeout=5):
        pass


async def test_kafka_round_trips_a_record(started: StackConfig) -> None:
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=started.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=started.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=started.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert record.value == b"hello"


async def test_postgres_accepts_the_auditlog_role(started: StackConfig) -> None:
    conn = await asyncpg.connect(started.database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "auditlog"
        assert await conn.fetchval("SELECT current_database()") == "auditlog"
        # Tests create throwaway databases.
        name = f"stack_test_{uuid.uuid4().hex[:8]}"
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.execute(f"DROP DATABASE {name}")
    finally:
        await conn.close()


def test_stop_then_start_keeps_the_installation(started: StackConfig) -> None:
    lines: list[str] = []
    stack.stop(started, echo=lines.append)
    assert [line.split(":")[0] for line in lines] == ["kafka", "postgres"]
    assert all("stopped" in line for line in lines)
    assert not stack.is_running(started)

    lines.clear()
    stack.stop(started, echo=lines.append)
    assert lines == ["kafka: not running", "postgres: not running"]

    lines.clear()
    stack.start(started, echo=lines.append)
    assert not [line for line in lines if "first run" in line]
    assert stack.is_running(started)


@dataclass
class _Ingest:
    """One `auditlog ingest` process on the module's stack, with a token of the log scope."""

    base: str
    token: str
    log: Path

    def wait_ready(self, expect: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=5).status_code == expect:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"/readyz never answered {expect}:\n{self.log.read_text()[-2000:]}")

    def log_event(self, i: int, token: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.base}/v1/log",
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=15,
            content=f'{{"event":{{"message":"outage {i}"}}}}'.encode(),
        )


@contextlib.contextmanager
def _running_ingest(started: StackConfig, topic: str, workdir: Path) -> Iterator[_Ingest]:
    from auditlog.kafka.clients import ensure_topics
    from auditlog.pg import db
    from auditlog.pg.tokens import create_token

    async def prepare() -> str:
        conn = await asyncpg.connect(started.database_url)
        try:
            await db.migrate(conn)
            token, _ = await create_token(conn, "outage", {"log"})
        finally:
            await conn.close()
        await ensure_topics(started.kafka_bootstrap, topic, partitions=1)
        return token

    token = asyncio.run(prepare())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "AUDITLOG_KAFKA_BOOTSTRAP": started.kafka_bootstrap,
        "AUDITLOG_DATABASE_URL": started.database_url,
        "AUDITLOG_TOPIC": topic,
        "AUDITLOG_PORT": str(port),
        "AUDITLOG_INGEST_SEND_TIMEOUT": "2",
        # One worker: the token cache is a worker's own, and the outage test needs the worker
        # that knows the token to be the one that answers.
        "AUDITLOG_INGEST_WORKERS": "1",
    }
    log = workdir / "ingest.log"
    with log.open("wb") as out:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", "ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield _Ingest(f"http://127.0.0.1:{port}", token, log)
    finally:
        ingest.terminate()
        ingest.wait(20)


def test_ingest_keeps_known_tokens_through_a_postgresql_restart(
    started: StackConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Events need only Kafka: a token ingest knew keeps working while PostgreSQL is down
    (the token cache's grace window), a token it never saw is refused as unavailable, not as
    unauthorized, and everything works again once the database is back."""
    from auditlog.devstack import postgres

    workdir = tmp_path_factory.mktemp("pg-outage")
    with _running_ingest(started, "audit.pg-outage", workdir) as ingest:
        ingest.wait_ready(200)
        assert ingest.log_event(0).status_code == 200  # the token is now known
        postgres.stop(started, echo=print)
        try:
            time.sleep(6)  # past the token cache's 5-s TTL: the next request looks it up
            during = ingest.log_event(1)
            assert during.status_code == 200, during.text
            stranger = ingest.log_event(2, token="alt_000000000000_never-seen")
            assert stranger.status_code == 503, stranger.text
            assert stranger.headers["retry-after"] == "1"
        finally:
            stack.start(started, echo=print)
        after = ingest.log_event(3)
        assert after.status_code == 200, after.text


# Last in this module: it takes the broker down and brings it back.
def test_ingest_answers_503_while_kafka_is_down_and_loses_no_acked_event(
    started: StackConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    acked: list[str] = []
    with _running_ingest(started, "audit.outage", tmp_path_factory.mktemp("outage")) as ingest:
        ingest.wait_ready(200)
        for i in range(10):
            resp = ingest.log_event(i)
            assert resp.status_code == 200, resp.text
            acked.append(resp.json()["result"]["hash"])

        stack.stop_kafka(started, echo=print)
        ingest.wait_ready(503)
        began = time.monotonic()
        down = ingest.log_event(100)
        assert time.monotonic() - began < 10, "a request hung while Kafka was down"
        assert down.status_code == 503
        assert down.json()["status"] == "ServiceNotAvailable"
        assert down.headers["retry-after"] == "1"

        stack.start(started, echo=print)
        ingest.wait_ready(200)
        for i in range(10, 20):
            deadline = time.monotonic() + 30
            while (resp := ingest.log_event(i)).status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.5)  # the producer reconnects on its own schedule
            assert resp.status_code == 200, resp.text
            acked.append(resp.json()["result"]["hash"])

    async def on_topic() -> set[str]:
        import hashlib

        consumer = AIOKafkaConsumer(
            "audit.outage",
            bootstrap_servers=started.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            seen: set[str] = set()
            while not set(acked) <= seen:
                batch = await consumer.getmany(timeout_ms=10_000)
                if not batch:
                    break
                seen |= {hashlib.sha256(r.value).hexdigest() for rs in batch.values() for r in rs}
            return seen
        finally:
            await consumer.stop()

    assert set(acked) <= asyncio.run(on_topic()), "an acknowledged event is missing"
