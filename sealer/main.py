"""The sealer's composition root: settings and files read, clients built, the loops run.

One consumer group; each worker seals the partitions the group's leader assigns it by their
load (sealer/assignment.py), one log per partition.
On assignment the worker loads each log's head and stored offset from PostgreSQL and seeks
there: Kafka's committed offsets are only written for lag monitoring, never read. The fetch
loop, the seal worker and the commits are :class:`sealer.worker.Sealer`'s.

Shutdown order (SIGTERM/SIGINT): stop fetching; seal what is buffered (every seal under way
finishes); commit the offsets to Kafka for lag reporting; stop the consumer (leaves the group);
flush and stop the dead-letter producer; close the PostgreSQL pool. The search index's merge
(sealer/index_merge.py) stops with the seals: a merge under way finishes before the pool closes.
The load sampling (sealer/assignment.py) stops at its next turn, after a request for end offsets
under way (at most 10 s).
"""

from __future__ import annotations

import asyncio
import signal
import stat
from pathlib import Path

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition

from auditlog.core.hashing import LogHasher, get_hasher
from auditlog.core.note import NoteSigner
from auditlog.core.policy import parse_policy
from auditlog.core.schema import Schemas
from auditlog.kafka.clients import make_consumer, make_producer
from auditlog.pg import db
from auditlog.runtime import stalls
from auditlog.runtime.eventloop import run_main
from auditlog.runtime.listener import MetricsListener, serve_metrics
from auditlog.runtime.observability import configure_logging, declare_build_info
from auditlog.runtime.settings import SettingsError, describe, load_schemas
from sealer import faults
from sealer.assignment import LoadAssignor, Rates, balance
from sealer.health import SealerHealth
from sealer.index_merge import merge_loop
from sealer.settings import Settings
from sealer.store import Witnessing, connect_pool
from sealer.worker import PARALLEL_SEALS, Sealer

log = structlog.get_logger("sealer")

# The broker answers a fetch once it has this much for us, or after this long: with the
# default (1 byte, 500 ms) a steady stream was fetched a few records at a time, and building and
# sending fetch requests took ~2 µs of the sealer's CPU per event at 50k events/s; now at most
# 20 ms of latency when idle or slow (docs/performance.md).
FETCH_MIN_BYTES = 64 * 1024
FETCH_MAX_WAIT_MS = 20
HEARTBEAT_INTERVAL_MS = 1000


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.sealer.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.sealer.assign(set(assigned))


def load_witnessing(settings: Settings) -> Witnessing | None:
    """The witness policy, when one is configured; it must name at least one witness URL."""
    path = settings.witness_policy_file
    if path is None:
        return None
    policy = parse_policy(path.read_text(encoding="utf-8"))
    if not policy.witness_urls:
        raise SettingsError(f"{path}: no witness has a URL to submit checkpoints to")
    return Witnessing(policy, settings.witness_timeout)


def load_signer(path: Path) -> NoteSigner:
    """The checkpoint signing key; refused when others than its owner may read or write it.

    Whoever reads it can sign checkpoints of every log: a key readable by a group or by
    everyone is one copy away from a forged history, so the sealer does not start with it
    (``auditlog keygen`` writes keys with mode 0600).
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SettingsError(
            f"the signing key {path} (AUDITLOG_SIGNING_KEY_FILE) has mode {mode:04o}: its group"
            f" or others may read or write it; make it private to the sealer's user with"
            f" `chmod 600 {path}`"
        )
    return NoteSigner.from_skey(path.read_text(encoding="utf-8").strip())


async def run(settings: Settings) -> None:
    configure_logging(settings.log_level)
    stalls.tune_collector()
    log.info("starting", **describe(settings))
    faults.arm(settings.fault)
    # Everything read from files is read here, before any connection: a bad file stops the
    # sealer at once with its reason.
    signer = load_signer(settings.signing_key_file)
    hasher = get_hasher(settings.hash_scheme)
    schemas = load_schemas(settings.schemas_file)
    witnessing = load_witnessing(settings)
    declare_build_info("sealer")
    health = SealerHealth(settings.ready_max_seal_age)
    listener = start_listener(settings, health)
    try:
        await _run(settings, signer, hasher, schemas, witnessing, health)
    finally:
        if listener is not None:
            listener.close()


def start_listener(settings: Settings, health: SealerHealth) -> MetricsListener | None:
    """The metrics listener, when a port is set: up before any connection, so a sealer still
    connecting to Kafka and PostgreSQL answers its probes (alive, not ready)."""
    if not settings.metrics_port:
        return None
    return serve_metrics(
        settings.metrics_host,
        settings.metrics_port,
        checks={"/healthz": health.healthz, "/readyz": health.readyz},
    )


async def _run(
    settings: Settings,
    signer: NoteSigner,
    hasher: LogHasher,
    schemas: Schemas,
    witnessing: Witnessing | None,
    health: SealerHealth,
) -> None:
    # One connection per parallel seal, one for partition creation and housekeeping, one for the
    # search index's merge.
    pool = await connect_pool(settings.database_url.value, max_size=PARALLEL_SEALS + 2)
    try:
        await db.check_schema(pool)
        # Not idempotent: aiokafka's idempotent producer never recovers from one refused batch
        # (OutOfOrderSequenceNumber ever after), and a dead letter written twice is harmless.
        dlq = make_producer(
            settings.kafka_bootstrap, settings.kafka_security, enable_idempotence=False
        )
        await dlq.start()
        try:
            assignor = LoadAssignor(Rates())
            consumer = make_consumer(
                settings.kafka_bootstrap,
                settings.kafka_security,
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                max_partition_fetch_bytes=4 * 1024 * 1024,
                fetch_min_bytes=FETCH_MIN_BYTES,
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                # One assignor only: aiokafka 0.14 rebalances in a loop when offered two
                # (sealer/assignment.py).
                partition_assignment_strategy=(assignor,),
                # Members learn of a rebalance from their next heartbeat, and every partition
                # waits for the last of them: a second apart instead of the default three.
                heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            )
            sealer = Sealer(
                settings,
                consumer,
                dlq,
                pool,
                hasher,
                signer,
                schemas=schemas,
                witnessing=witnessing,
                health=health,
            )
            consumer.subscribe([settings.topic], listener=_Rebalance(sealer))
            await consumer.start()
            try:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, sealer.stopping.set)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(sealer.fetch_loop(), name="fetch-loop")
                    tg.create_task(sealer.seal_loop(), name="seal-loop")
                    tg.create_task(sealer.housekeeping(), name="housekeeping")
                    tg.create_task(sealer.commit_loop(), name="commit-loop")
                    tg.create_task(
                        merge_loop(
                            pool,
                            settings.search_merge_interval,
                            sealer.stopping,
                            generation_entries=settings.search_generation_entries,
                        ),
                        name="search-merge",
                    )
                    tg.create_task(
                        balance(
                            consumer,
                            assignor,
                            settings.topic,
                            settings.rebalance_interval,
                            sealer.stopping,
                        ),
                        name="balance",
                    )
                    tg.create_task(stalls.watch_event_loop(sealer.stopping), name="loop-watch")
                    tg.create_task(
                        health.watch(
                            consumer,
                            sealer.heads,
                            sealer.next_offset,
                            sealer.busy,
                            settings.topic,
                            sealer.stopping,
                        ),
                        name="health-watch",
                    )
                await sealer.commit_sealed()  # what the last seals sealed, before leaving
                log.info("stopped")
            finally:
                await consumer.stop()
        finally:
            await dlq.stop()
    finally:
        await pool.close()


def main() -> None:
    run_main(run(Settings.from_env()))
