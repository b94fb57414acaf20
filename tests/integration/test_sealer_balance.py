"""Sealers spread partitions by load (sealer/assignment.py), on the real Kafka and PostgreSQL.

Two sealers of a four-partition topic whose events come from two tenants, on partitions 0 and 2:
the first plan, made before any rate was known, deals partitions by count and gives both hot
ones to one sealer; once the rates show it, the group's leader asks for a rebalance and the hot
partitions end on different sealers, every event sealed exactly once across it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

from auditlog.producer import AuditProducer
from tests.conftest import Services
from tests.integration.sealer_harness import SealerFleet, check_exactly_once, wait_sealed

PARTITIONS = 4
HOT = (0, 2)


def tenant_on(partition: int) -> str:
    """A tenant id Kafka's default partitioner puts on ``partition``."""
    for i in range(10_000):
        tenant = f"tenant-{i}"
        if (murmur2(tenant.encode()) & 0x7FFFFFFF) % PARTITIONS == partition:
            return tenant
    raise AssertionError(f"no tenant found for partition {partition}")


def owners(fleet: SealerFleet, topic: str) -> dict[int, set[int]]:
    """Which sealers own each partition now, from their logs' assigned and revoked lines."""
    owned: dict[int, set[int]] = {}
    for sealer, path in enumerate(sorted(Path(fleet.workdir).glob("sealer-*.log"))):
        mine: set[int] = set()
        for line in path.read_text().splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("event") == "assigned" and entry["log"].startswith(f"{topic}-"):
                mine.add(int(entry["log"].rsplit("-", 1)[1]))
            elif entry.get("event") == "revoked":
                mine.discard(int(entry["partition"]))
        for partition in mine:
            owned.setdefault(partition, set()).add(sealer)
    return owned


async def wait_for(check: Callable[[], object], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {within:.0f} s")
        await asyncio.sleep(0.2)


async def produce_hot(services: Services, topic: str, stop: asyncio.Event) -> list[str]:
    """Up to ~2,000 events/s from the two hot partitions' tenants until ``stop``: well past the
    250 events/s a rebalance must gain, on a slow machine too."""
    tenants = [tenant_on(p) for p in HOT]
    hashes: list[str] = []
    async with AuditProducer(services.kafka_bootstrap, topic) as producer:
        i = 0
        while not stop.is_set():
            events = [
                {"message": f"hot {i + j}", "actor": "balance", "tenant_id": tenants[j % 2]}
                for j in range(200)
            ]
            i += len(events)
            hashes += await producer.log_many(events)
            await asyncio.sleep(0.1)
    return hashes


@pytest.mark.parametrize("topic", [PARTITIONS], indirect=True)
async def test_the_leader_splits_the_hot_partitions(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    for _ in range(2):
        fleet.start(AUDITLOG_SEALER_REBALANCE_INTERVAL="1")

    def spread_over_two() -> bool:
        now = owners(fleet, topic)
        return (
            len(now) == PARTITIONS
            and all(len(s) == 1 for s in now.values())
            and len(set().union(*now.values())) == 2
        )

    await wait_for(spread_over_two, "both sealers own partitions", 60)
    # Dealt by count, before any rate: one sealer owns both partitions the load will go to.
    first = owners(fleet, topic)
    assert first[HOT[0]] == first[HOT[1]]

    stop = asyncio.Event()
    producing = asyncio.create_task(produce_hot(services, topic, stop))
    try:
        await wait_for(lambda: fleet.events("rebalance_requested"), "a rebalance asked for", 40)

        def hot_split() -> bool:
            now = owners(fleet, topic)
            return spread_over_two() and now[HOT[0]] != now[HOT[1]]

        await wait_for(hot_split, "the hot partitions on different sealers", 40)
    finally:
        stop.set()
        hashes = await producing

    [asked] = fleet.events("rebalance_requested")  # once: the plan after it is even
    assert asked["busiest"] > asked["busiest_after"] + 250
    await wait_sealed(services, topic, len(hashes))
    vkey = fleet.key_file.with_suffix(".vkey").read_text().strip()
    sizes = await check_exactly_once(services, topic, hashes, vkey)
    assert {log.rsplit("-", 1)[1] for log, size in sizes.items() if size} == {"0", "2"}
