"""Sealer drills on the shared Kafka and PostgreSQL (scratch topics, never stopped): a crash at
each step of the seal transaction, and a dead-letter topic that cannot be written.

Each ends with exactly the produced events sealed, each once, in offset order, under consistent
signed checkpoints, and `auditlog audit` of the logs (from the database, with the log's key)
clean.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.kafka.clients import dlq_topic, ensure_topics
from sealer import faults
from tests.conftest import Services, delete_topics
from tests.integration.sealer_harness import (
    SealerFleet,
    WitnessProcess,
    audit_clean,
    check_exactly_once,
    produce,
    wait_sealed,
)

pytestmark = pytest.mark.integration

HOSTILE = b"\x00 not json"  # a dead letter `not-json`


def _vkey_file(fleet: SealerFleet) -> Path:
    return fleet.key_file.with_suffix(".vkey")


async def _send_raw(services: Services, topic: str, values: list[tuple[int, bytes]]) -> list[int]:
    """Send each (partition, value) in order; returns the offsets Kafka gave them."""
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        offsets = []
        for partition, value in values:
            meta = await producer.send_and_wait(topic, value, partition=partition)
            offsets.append(meta.offset)
        return offsets
    finally:
        await producer.stop()


def _envelopes(n: int, tag: str) -> list[Envelope]:
    now = format_received_at(datetime.now(UTC))
    return [Envelope(event={"message": f"{tag} {i}"}, received_at=now) for i in range(n)]


async def _to_partition(
    services: Services, topic: str, partition: int, n: int, tag: str
) -> list[str]:
    envs = _envelopes(n, tag)
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, e.canonical, partition=partition) for e in envs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [e.event_hash.hex() for e in envs]


async def _dead_letters(
    services: Services, topic: str, want: set[tuple[int, int]]
) -> set[tuple[int, int]]:
    """(partition, offset) of every dead letter on the DLQ, read until ``want`` are all seen."""
    consumer = AIOKafkaConsumer(
        dlq_topic(topic),
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: set[tuple[int, int]] = set()
    try:
        while not want <= seen:
            batch = await consumer.getmany(timeout_ms=10_000)
            if not batch:
                break
            for record in (r for rs in batch.values() for r in rs):
                headers = dict(record.headers)
                seen.add((int(headers["dlq-partition"]), int(headers["dlq-offset"])))
    finally:
        await consumer.stop()
    return seen


async def _sizes(services: Services, topic: str) -> dict[int, int]:
    conn = await asyncpg.connect(services.database_url)
    try:
        rows = await conn.fetch("SELECT kafka_partition, size FROM logs WHERE topic = $1", topic)
    finally:
        await conn.close()
    return {r["kafka_partition"]: r["size"] for r in rows}


async def _next_offset(services: Services, log_id: str) -> int:
    conn = await asyncpg.connect(services.database_url)
    try:
        offset: int = await conn.fetchval("SELECT next_offset FROM logs WHERE log_id = $1", log_id)
    finally:
        await conn.close()
    return offset


async def _wait(condition: Callable[[], Awaitable[bool]], what: str, within: float = 45) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"{what}: not within {within}s"
        await asyncio.sleep(0.2)


# tiles-written is reached only with witnesses (below); without them tiles, bundles, checkpoint
# and head are one statement, so before-commit covers "after the tiles" and "after the
# checkpoint" too.
CRASH_STEPS = [step for step in faults.STEPS if step != "tiles-written"]


@pytest.mark.parametrize("step", CRASH_STEPS)
async def test_a_crash_at_each_step_of_the_seal_seals_everything_once(
    services: Services, topic: str, fleet: SealerFleet, tmp_path: Path, step: str
) -> None:
    await _crash_and_take_over(services, topic, fleet, tmp_path, step, partitions=2)


@pytest.mark.parametrize("topic", [1], indirect=True)
@pytest.mark.parametrize("step", ["tiles-written", "before-commit"])
async def test_a_crash_of_a_witnessed_seal_seals_everything_once(
    services: Services, topic: str, fleet: SealerFleet, tmp_path: Path, step: str
) -> None:
    # tiles-written: the tiles are written, the witness has not seen the checkpoint yet;
    # before-commit: the witness cosigned a checkpoint that is never committed. The batch is
    # sealed again from the same offsets, so what the witness saw stays a prefix of the log
    # (it would refuse the next checkpoint otherwise, and nothing more would be sealed).
    vkey = _vkey_file(fleet).read_text().strip()
    witness = WitnessProcess(tmp_path, f"drill.auditlog.test/{topic}/0", vkey)
    witness.start()
    try:
        policy = tmp_path / "policy"
        policy.write_text(f"log {vkey}\nwitness w1 {witness.vkey()} {witness.url}\nquorum w1\n")
        await _crash_and_take_over(
            services, topic, fleet, tmp_path, step, partitions=1,
            AUDITLOG_WITNESS_POLICY_FILE=str(policy),
        )  # fmt: skip
    finally:
        witness.stop()


async def _crash_and_take_over(
    services: Services,
    topic: str,
    fleet: SealerFleet,
    tmp_path: Path,
    step: str,
    partitions: int,
    **extra: str,
) -> None:
    # Good events over the partitions with a hostile record after every 250, so several
    # batches (of at most 200) carry a dead letter and every step is reached more than once.
    hashes: list[str] = []
    hostile: list[tuple[int, int]] = []
    for chunk in range(6):
        hashes += await produce(services, topic, 250, f"{step} {chunk}")
        partition = chunk % partitions
        [offset] = await _send_raw(services, topic, [(partition, HOSTILE)])
        hostile.append((partition, offset))

    # Groups of their own: a member that died in a group shared with other tests would hold
    # their rebalances back for its session timeout.
    victim = fleet.start(group=f"{topic}.victim", AUDITLOG_SEALER_FAULT=f"{step}:2", **extra)
    await asyncio.to_thread(victim.wait, 60)
    assert victim.returncode == faults.EXIT_CODE, fleet.logs()[-3000:]
    assert f'"event": "fault_injected", "step": "{step}"' in fleet.logs()

    # A fresh sealer, in a group of its own (the dead one never left its group, and only the
    # offsets stored in PostgreSQL count), takes over from what the database holds.
    fleet.start(group=f"{topic}.after", **extra)
    await wait_sealed(services, topic, len(hashes))
    await asyncio.sleep(0.5)  # anything sealed twice would show up now
    sizes = await check_exactly_once(services, topic, hashes, _vkey_file(fleet).read_text().strip())
    assert audit_clean(services.database_url, _vkey_file(fleet), sorted(sizes), tmp_path) == sizes
    assert set(hostile) <= await _dead_letters(services, topic, set(hostile))


async def test_a_dead_letter_that_cannot_be_written_holds_only_its_partition_back(
    services: Services, topic: str, fleet: SealerFleet, tmp_path: Path
) -> None:
    # The DLQ is gone and the broker does not create topics: the hostile record of partition 0
    # cannot be parked, so it must not be passed by either. Its partition waits (each seal
    # fails and is retried), the sealer stays up, and partition 1 seals on meanwhile.
    await delete_topics(services.kafka_bootstrap, [dlq_topic(topic)])
    hashes = await _to_partition(services, topic, 0, 50, "before")
    [bad] = await _send_raw(services, topic, [(0, HOSTILE)])
    hashes += await _to_partition(services, topic, 0, 50, "after")
    hashes += await _to_partition(services, topic, 1, 300, "other")
    sealer = fleet.start()

    # The good records before the hostile one wait too when they share its batch: the dead
    # letters of a batch are sent before its seal, and a batch is sealed whole or not at all.
    async def stuck() -> bool:
        sizes = await _sizes(services, topic)
        return sizes.get(0, 0) <= bad and sizes.get(1) == 300 and bool(fleet.events("seal_failed"))

    await _wait(stuck, "partition 1 sealed, partition 0 up to its hostile record, a seal failed")
    more = await _to_partition(services, topic, 1, 200, "meanwhile")
    await _wait(lambda: _partition_has(services, topic, 1, 500), "partition 1 sealing on")
    assert await _next_offset(services, f"{topic}-0") <= bad, "the hostile record was passed by"
    assert sealer.poll() is None, "the sealer stopped"

    await ensure_topics(services.kafka_bootstrap, topic, partitions=2)  # the DLQ is back
    await wait_sealed(services, topic, len(hashes) + len(more))
    await asyncio.sleep(0.5)
    sizes = await check_exactly_once(
        services, topic, hashes + more, _vkey_file(fleet).read_text().strip()
    )
    assert audit_clean(services.database_url, _vkey_file(fleet), sorted(sizes), tmp_path) == sizes
    assert (0, bad) in await _dead_letters(services, topic, {(0, bad)})
    failures = fleet.events("seal_failed")
    assert {f["error"] for f in failures} == {"UnknownTopicOrPartitionError"}, failures[:3]
    assert sealer.poll() is None


async def _partition_has(services: Services, topic: str, partition: int, size: int) -> bool:
    return (await _sizes(services, topic)).get(partition) == size
