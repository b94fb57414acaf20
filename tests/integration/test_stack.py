"""`auditlog stack` against real Kafka and PostgreSQL servers.

The stack here has its own home and ports, so a developer's stack (or the one other integration
tests share) on the default ports is never touched, and this one is always stopped at the end.
"""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from auditlog.devstack import stack
from auditlog.devstack.config import StackConfig
from auditlog.devstack.postgres import pg_data_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    cfg = StackConfig(
        home=tmp_path_factory.mktemp("stack"),
        kafka_port=29092,
        controller_port=29093,
        pg_port=54339,
    )
    try:
        began = time.monotonic()
        stack.start(cfg, echo=print)
        print(f"cold start took {time.monotonic() - began:.1f}s")
        yield cfg
    finally:
        stack.stop(cfg, echo=print)
        pg_root = pg_data_dir(cfg).parent
        if not pg_root.is_relative_to(cfg.home):
            shutil.rmtree(pg_root, ignore_errors=True)


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


# Last in this module: it takes the broker down and brings it back.
def test_ingest_answers_503_while_kafka_is_down_and_loses_no_acked_event(
    started: StackConfig, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    import httpx

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
        await ensure_topics(started.kafka_bootstrap, "audit.outage", partitions=1)
        return token

    token = asyncio.run(prepare())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "AUDITLOG_KAFKA_BOOTSTRAP": started.kafka_bootstrap,
        "AUDITLOG_DATABASE_URL": started.database_url,
        "AUDITLOG_TOPIC": "audit.outage",
        "AUDITLOG_PORT": str(port),
        "AUDITLOG_INGEST_SEND_TIMEOUT": "2",
    }
    log = tmp_path_factory.mktemp("outage") / "ingest.log"
    with log.open("wb") as out:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", "ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}

    def wait_ready(expect: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == expect:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"/readyz never answered {expect}:\n{log.read_text()[-2000:]}")

    def log_event(i: int) -> httpx.Response:
        return httpx.post(
            f"{base}/v1/log",
            headers=headers,
            timeout=15,
            content=f'{{"event":{{"message":"outage {i}"}}}}'.encode(),
        )

    acked: list[str] = []
    try:
        wait_ready(200)
        for i in range(10):
            resp = log_event(i)
            assert resp.status_code == 200, resp.text
            acked.append(resp.json()["result"]["hash"])

        stack.stop_kafka(started, echo=print)
        wait_ready(503)
        began = time.monotonic()
        down = log_event(100)
        assert time.monotonic() - began < 10, "a request hung while Kafka was down"
        assert down.status_code == 503
        assert down.json()["status"] == "ServiceNotAvailable"
        assert down.headers["retry-after"] == "1"

        stack.start(started, echo=print)
        wait_ready(200)
        for i in range(10, 20):
            deadline = time.monotonic() + 30
            while (resp := log_event(i)).status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.5)  # the producer reconnects on its own schedule
            assert resp.status_code == 200, resp.text
            acked.append(resp.json()["result"]["hash"])
    finally:
        ingest.terminate()
        ingest.wait(20)

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
