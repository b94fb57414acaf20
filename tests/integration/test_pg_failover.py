"""PostgreSQL failover under running sealers: a synchronous streaming replica is promoted.

A PostgreSQL primary of this module's own (free port, temporary home) gets a synchronous
streaming replica (`auditlog.devstack.postgres_replica`: pg_basebackup, then the primary waits
for the replica on every commit). Two sealers connect through one multi-host URL with
``target_session_attrs=read-write``, events flow through the shared Kafka, and mid-stream the
primary is stopped as a crash would end it (``pg_ctl stop -m immediate``) and the replica
promoted. The sealers are not restarted: they must reconnect to the new primary by themselves.

Asserted: every checkpoint the primary had committed a second before the crash is on the new
primary unchanged (nothing acknowledged to a sealer was lost, no log forked); every produced
event is sealed exactly once under consistent checkpoints; `auditlog audit` is clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from auditlog.devstack import postgres_replica
from auditlog.devstack.config import StackConfig
from auditlog.producer import AuditProducer
from tests.conftest import Services, migrate_database, record_drill
from tests.integration.own_stack import free_port, separate_postgres
from tests.integration.sealer_harness import (
    SealerFleet,
    audit_clean,
    check_exactly_once,
    wait_sealed,
)

pytestmark = pytest.mark.integration

RATE, SECONDS = 1000, 7  # events a second, and for how long (the crash comes ~3 s in)


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackConfig, int]]:
    with separate_postgres(tmp_path_factory.mktemp("failover")) as cfg:
        migrate_database(cfg.database_url)
        replica_port = free_port()
        postgres_replica.start_replica(cfg, replica_port, print, synchronous=True)
        yield cfg, replica_port


@pytest.fixture
def services(services: Services, primary: tuple[StackConfig, int]) -> Services:
    """The shared Kafka, this module's PostgreSQL pair behind one failover URL."""
    cfg, replica_port = primary
    return Services(
        services.kafka_bootstrap, postgres_replica.failover_url(cfg, replica_port), services.topic
    )


async def _produce(services: Services, topic: str, hashes: list[str]) -> None:
    chunk = RATE // 10
    async with AuditProducer(services.kafka_bootstrap, topic) as producer:
        began = time.monotonic()
        for tick in range(SECONDS * 10):
            events = [
                {"message": f"failover {tick}.{i}", "tenant_id": f"t{i % 9}"} for i in range(chunk)
            ]
            hashes += await producer.log_many(events)
            await asyncio.sleep(max(0.0, began + (tick + 1) / 10 - time.monotonic()))


async def _checkpoints(url: str, topic: str) -> set[tuple[str, int, bytes, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT log_id, size, root, note FROM checkpoints WHERE log_id LIKE $1", f"{topic}-%"
        )
    finally:
        await conn.close()
    return {(r["log_id"], r["size"], bytes(r["root"]), r["note"]) for r in rows}


async def _first_new_checkpoint(
    services: Services, topic: str, before: set[tuple[str, int, bytes, str]]
) -> float:
    """When a checkpoint not in ``before`` shows up through the failover URL (the new primary
    once the old one is gone): sealing resumed."""
    deadline = time.monotonic() + 60
    while not (await _checkpoints(services.database_url, topic)) - before:
        assert time.monotonic() < deadline, "no checkpoint sealed after the failover"
        await asyncio.sleep(0.1)
    return time.monotonic()


async def test_promoting_the_synchronous_replica_loses_nothing_the_sealers_committed(
    primary: tuple[StackConfig, int],
    services: Services,
    topic: str,
    fleet: SealerFleet,
    tmp_path: Path,
) -> None:
    cfg, replica_port = primary
    standby = postgres_replica.replica_status(cfg)  # what `auditlog stack status` prints
    assert standby is not None and standby.running and standby.detail.startswith("standby on")
    fleet.start()
    fleet.start()
    hashes: list[str] = []
    producing = asyncio.create_task(_produce(services, topic, hashes))
    try:
        await wait_sealed(services, topic, RATE * 2, within=30)
        committed = await _checkpoints(cfg.database_url, topic)
        await asyncio.sleep(1)
        crashed = time.monotonic()
        await asyncio.to_thread(postgres_replica.stop_primary, cfg, print)
        await asyncio.to_thread(postgres_replica.promote, cfg, print)
        promoted = time.monotonic() - crashed
        now_primary = postgres_replica.replica_status(cfg)
        assert now_primary is not None and now_primary.detail.startswith("promoted")
        at_promotion = await _checkpoints(services.database_url, topic)
        resumed = await _first_new_checkpoint(services, topic, at_promotion) - crashed
        await producing
    finally:
        if not producing.done():
            producing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producing
    await wait_sealed(services, topic, len(hashes), within=60)
    print(
        f"primary crashed; replica promoted {promoted:.1f}s and the first checkpoint sealed on "
        f"it {resumed:.1f}s after the crash; {len(hashes)} events"
    )
    record_drill(
        "postgres_failover",
        promoted_after_crash_s=round(promoted, 2),
        first_checkpoint_after_crash_s=round(resumed, 2),
        events=len(hashes),
    )
    after = await _checkpoints(postgres_replica.replica_url(cfg, replica_port), topic)
    assert committed, "nothing was sealed before the crash"
    assert committed <= after, "a checkpoint committed on the old primary is gone or changed"
    vkey = fleet.key_file.with_suffix(".vkey")
    sizes = await check_exactly_once(services, topic, hashes, vkey.read_text().strip())
    assert audit_clean(services.database_url, vkey, sorted(sizes), tmp_path) == sizes
    assert all(p.poll() is None for p in fleet.procs), "a sealer stopped"
    # The crash cut seals under way: they failed, and the sealers found the new primary.
    assert fleet.events("seal_failed"), "no seal failed: the primary did not go mid-stream"
