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

from auditlog import stack
from auditlog.stack import StackConfig

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
        pg_root = stack.pg_data_dir(cfg).parent
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
