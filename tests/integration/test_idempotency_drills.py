"""Idempotency drills on real Kafka and PostgreSQL, through sealer processes (issue 21).

* the copies of retried events on two partitions, sealed concurrently: each key sealed once,
  no deadlock;
* the same key with other content: one sealed, the other a dead letter ``idempotency-conflict``,
  counted in ``auditlog_sealer_idempotency_conflicts_total``;
* the same key from two principals: both sealed;
* past ``AUDITLOG_IDEMPOTENCY_WINDOW`` the same key seals again.

The broker-kill drill under HTTP traffic is tests/integration/test_idempotency_outage.py.
"""

from __future__ import annotations

import asyncio
import random
import socket
import urllib.request
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.kafka.clients import dlq_topic
from tests.conftest import Services
from tests.integration.sealer_harness import SealerFleet, check_exactly_once, wait_sealed

pytestmark = pytest.mark.integration

Headers = list[tuple[str, bytes]]


def _vkey(fleet: SealerFleet) -> str:
    return fleet.key_file.with_suffix(".vkey").read_text().strip()


def _envelope(message: str, attempt: int = 0) -> Envelope:
    # Each attempt is received at another time, as ingest stamps each request.
    received = datetime.now(UTC).replace(microsecond=0) + timedelta(milliseconds=attempt)
    return Envelope(event={"message": message}, received_at=format_received_at(received))


def _keyed(key: str, principal: str | None = None) -> Headers:
    headers = [("idempotency-key", key.encode())]
    if principal is not None:
        headers.append(("principal", principal.encode()))
    return headers


async def _send(
    services: Services, topic: str, records: list[tuple[int, Envelope, Headers]]
) -> None:
    """Send (partition, envelope, headers) records, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition, env, headers in records:
            await producer.send(topic, env.canonical, partition=partition, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def _sealed_keys(services: Services, topic: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(services.database_url)
    try:
        rows = await conn.fetch(
            "SELECT k.principal, k.tenant_id, k.key FROM idempotency_keys k"
            " JOIN events e ON e.log_id = k.log_id AND e.idx = k.idx WHERE k.log_id LIKE $1",
            f"{topic}-%",
        )
    finally:
        await conn.close()
    return sorted((r["principal"], r["tenant_id"], r["key"]) for r in rows)


async def _dead_letters(services: Services, topic: str, n: int) -> list[dict[str, bytes]]:
    consumer = AIOKafkaConsumer(
        dlq_topic(topic), bootstrap_servers=services.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[dict[str, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < n:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [{**dict(r.headers), "value": r.value} for r in records]
    finally:
        await consumer.stop()
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


async def test_copies_of_retries_on_two_partitions_are_sealed_once_without_deadlock(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    # 600 untenanted events, each sent twice (two attempts, two received times), the copies on
    # both partitions in two different orders: the sealer seals both partitions at once.
    rng = random.Random(5)
    keys = [f"retry-{i}" for i in range(600)]
    records: list[tuple[int, Envelope, Headers]] = []
    for partition in (0, 1):
        order = keys[:]
        rng.shuffle(order)
        records += [(partition, _envelope(f"event {k}", partition), _keyed(k)) for k in order]
    await _send(services, topic, records)
    fleet.start(AUDITLOG_BATCH_MAX_SIZE="300", AUDITLOG_BATCH_MAX_AGE="0.2")
    await wait_sealed(services, topic, 600)
    await asyncio.sleep(1.0)
    assert await _sealed_keys(services, topic) == sorted(("kafka", "", k) for k in keys)
    assert sum(e["duplicates"] for e in fleet.events("sealed")) == 600
    assert "Deadlock" not in fleet.logs()
    assert not fleet.events("seal_failed")
    assert not fleet.events("dead_letter")
    # Each key's one sealed event is one of its two copies, under signed checkpoints.
    conn = await asyncpg.connect(services.database_url)
    try:
        hashes = [
            bytes(r["event_hash"]).hex()
            for r in await conn.fetch(
                "SELECT event_hash FROM events WHERE log_id LIKE $1", f"{topic}-%"
            )
        ]
    finally:
        await conn.close()
    copies = {env.event_hash.hex() for _, env, _ in records}
    assert len(hashes) == 600 and set(hashes) <= copies
    await check_exactly_once(services, topic, hashes, _vkey(fleet))


async def test_same_key_other_content_is_a_conflict_dead_letter(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    paid = _envelope("pay 10 to alice")
    other = _envelope("pay 9000 to mallory", 1)
    await _send(services, topic, [(0, paid, _keyed("order-7")), (1, other, _keyed("order-7"))])
    port = _free_port()
    fleet.start(AUDITLOG_SEALER_METRICS_PORT=str(port))
    dead = await _dead_letters(services, topic, 1)
    await wait_sealed(services, topic, 1)
    await asyncio.sleep(1.0)
    assert len(dead) == 1
    [letter] = dead
    assert letter["dlq-reason"] == b"idempotency-conflict"
    assert letter["idempotency-key"] == b"order-7"
    assert letter["principal"] == b"kafka"
    sealed_value = paid.canonical if letter["value"] == other.canonical else other.canonical
    assert letter["value"] in (paid.canonical, other.canonical)
    assert b"with other content" in letter["dlq-detail"]
    assert await _sealed_keys(services, topic) == [("kafka", "", "order-7")]
    conn = await asyncpg.connect(services.database_url)
    try:
        envelopes = [
            bytes(r["envelope"])
            for r in await conn.fetch(
                "SELECT envelope FROM events WHERE log_id LIKE $1", f"{topic}-%"
            )
        ]
    finally:
        await conn.close()
    assert envelopes == [sealed_value]
    assert _metric(port, "auditlog_sealer_idempotency_conflicts_total") == 1


async def test_the_same_key_from_two_principals_is_sealed_twice(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    a, b, kafka = _envelope("from a"), _envelope("from b", 1), _envelope("from kafka", 2)
    await _send(
        services,
        topic,
        [
            (0, a, _keyed("k", "token:a")),
            (0, b, _keyed("k", "token:b")),
            (1, kafka, _keyed("k")),
            (1, _envelope("from a", 3), _keyed("k", "token:a")),  # a's retry, other partition
        ],
    )
    fleet.start()
    await wait_sealed(services, topic, 3)
    await asyncio.sleep(1.0)
    assert await _sealed_keys(services, topic) == [
        ("kafka", "", "k"),
        ("token:a", "", "k"),
        ("token:b", "", "k"),
    ]
    assert sum(e["duplicates"] for e in fleet.events("sealed")) == 1


async def test_past_the_window_the_same_key_seals_again(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    fleet.start(AUDITLOG_IDEMPOTENCY_WINDOW="2")
    await _send(services, topic, [(0, _envelope("pay"), _keyed("k-window"))])
    await wait_sealed(services, topic, 1)
    await _send(services, topic, [(0, _envelope("pay", 1), _keyed("k-window"))])  # within
    await asyncio.sleep(1.0)
    await asyncio.sleep(2.5)  # past the window
    await _send(services, topic, [(1, _envelope("pay", 2), _keyed("k-window"))])
    await wait_sealed(services, topic, 2)
    await asyncio.sleep(1.0)
    conn = await asyncpg.connect(services.database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM events WHERE log_id LIKE $1", f"{topic}-%"
        )
        claim = await conn.fetchrow(
            "SELECT log_id, idx FROM idempotency_keys WHERE key = 'k-window' AND log_id LIKE $1",
            f"{topic}-%",
        )
    finally:
        await conn.close()
    assert count == 2
    assert sum(e["duplicates"] for e in fleet.events("sealed")) == 1
    assert claim is not None and (claim["log_id"], claim["idx"]) == (f"{topic}-1", 0)
