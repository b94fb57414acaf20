"""Sealer drills that take a server down under running sealers: PostgreSQL stopped with
``pg_ctl stop -m immediate`` mid-seal, and the Kafka broker killed with kill -9.

They run on a stack of their own (``outage_stack`` in tests/integration/conftest.py, ports
29592-29594, shared with the idempotency outage drill), always stopped at the end: the shared
stack on the default ports is never touched. The sealers are
never restarted by the test: they must recover on their own, and each drill ends with exactly the
acknowledged events sealed once, under consistent signed checkpoints, `auditlog audit` clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from auditlog.devstack import kafka, postgres, stack
from auditlog.devstack.config import StackConfig
from auditlog.devstack.host import as_pg_owner, pid_alive
from auditlog.kafka.clients import ensure_topics
from auditlog.producer import AuditProducer
from tests.conftest import Services
from tests.integration.sealer_harness import (
    SealerFleet,
    audit_clean,
    check_exactly_once,
    produce,
    sealed_count,
    wait_sealed,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def topic(outage_stack: StackConfig) -> str:
    name = f"audit.outage-{uuid.uuid4().hex[:8]}"
    await ensure_topics(outage_stack.kafka_bootstrap, name, partitions=2)
    return name  # the stack, and the topic with it, goes at the end of the session


@pytest.fixture
def services(outage_stack: StackConfig, topic: str) -> Services:
    return Services(outage_stack.kafka_bootstrap, outage_stack.database_url, topic)


def _stop_postgres_immediately(cfg: StackConfig) -> None:
    """``pg_ctl stop -m immediate``, as the cluster's owner: no checkpoint, every connection
    cut, crash recovery at the next start."""
    files = postgres.cluster_files(cfg)
    pg_ctl = postgres.ensure_bin(print) / "pg_ctl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(
        as_pg_owner([str(pg_ctl), "-D", str(files.data), "-m", "immediate", "-w", "stop"]),
        check=True, cwd=files.root, env=env, timeout=60,
    )  # fmt: skip
    assert postgres.running_pid(cfg) is None


def _kill_kafka(cfg: StackConfig) -> None:
    pid = kafka.running_pid(cfg)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid_alive(pid):
        assert time.monotonic() < deadline, "the broker outlived kill -9"
        time.sleep(0.1)


async def _produce_steadily(
    services: Services, topic: str, rate: int, seconds: float, hashes: list[str]
) -> None:
    """About ``rate`` events a second for ``seconds``, each chunk acknowledged (acks=all)."""
    chunk = rate // 10
    async with AuditProducer(services.kafka_bootstrap, topic) as producer:
        began = time.monotonic()
        for tick in range(int(seconds * 10)):
            events = [
                {
                    "message": f"steady {tick}.{i}",
                    "actor": f"user-{i % 7}",
                    "tenant_id": f"t{i % 50}",
                }
                for i in range(chunk)
            ]
            hashes += await producer.log_many(events)
            await asyncio.sleep(max(0.0, began + (tick + 1) / 10 - time.monotonic()))


async def _check(services: Services, fleet: SealerFleet, hashes: list[str], tmp_path: Path) -> None:
    await wait_sealed(services, services.topic, len(hashes), within=60)
    await asyncio.sleep(0.5)  # anything sealed twice would show up now
    vkey = fleet.key_file.with_suffix(".vkey")
    sizes = await check_exactly_once(services, services.topic, hashes, vkey.read_text().strip())
    assert audit_clean(services.database_url, vkey, sorted(sizes), tmp_path) == sizes
    assert all(p.poll() is None for p in fleet.procs), "a sealer stopped"


async def test_postgres_immediate_stop_mid_seal_then_start(
    outage_stack: StackConfig, services: Services, fleet: SealerFleet, tmp_path: Path
) -> None:
    sealers = [fleet.start(), fleet.start()]
    await asyncio.sleep(0)
    hashes: list[str] = []
    producing = asyncio.create_task(_produce_steadily(services, services.topic, 3000, 7, hashes))
    try:
        await wait_sealed(services, services.topic, 3000, within=30)
        before = await sealed_count(services, services.topic)
        await asyncio.to_thread(_stop_postgres_immediately, outage_stack)
        await asyncio.sleep(1)  # seals meanwhile fail; the stream goes on into Kafka
        await asyncio.to_thread(stack.start, outage_stack, print)
        await producing
    finally:
        if not producing.done():
            producing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producing
    await _check(services, fleet, hashes, tmp_path)
    assert before < len(hashes) // 2, "PostgreSQL went down only after most of the stream"
    # The stop cut seals under way: they failed, and the sealers retried on their own.
    assert fleet.events("seal_failed"), "no seal failed: PostgreSQL was not stopped mid-seal"
    assert all(s.poll() is None for s in sealers)


async def test_kafka_broker_killed_under_running_sealers_then_started(
    outage_stack: StackConfig, services: Services, fleet: SealerFleet, tmp_path: Path
) -> None:
    hashes = await produce(services, services.topic, 20_000, "before")
    fleet.start()
    fleet.start()
    await wait_sealed(services, services.topic, 2000, within=30)
    await asyncio.to_thread(_kill_kafka, outage_stack)
    during = await sealed_count(services, services.topic)
    await asyncio.sleep(4)  # the sealers meet a dead broker for a while (was 10 s; 4 is plenty)
    await asyncio.to_thread(stack.start, outage_stack, print)
    hashes += await produce(services, services.topic, 2000, "after")
    assert during < 20_000, "everything was sealed before the broker went down"
    await _check(services, fleet, hashes, tmp_path)
