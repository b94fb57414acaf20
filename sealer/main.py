"""The sealer's composition root and consume-seal loop.

One consumer group; each worker seals the partitions Kafka assigns it, one log per partition.
On assignment the worker loads each log's head and stored offset from PostgreSQL and seeks
there: Kafka's committed offsets are only written for lag monitoring, never read.

Exactly once: a batch's events, tiles, bundles, checkpoint and the partition's next offset are
written in one transaction, fenced on the log head, so a crash at any instant either sealed the
whole batch (and the new owner starts after it) or nothing (and it is read again).

Shutdown order (SIGTERM/SIGINT): stop fetching; seal what is buffered; commit the offsets to
Kafka for lag reporting; stop the consumer (leaves the group); flush and stop the dead-letter
producer; close the PostgreSQL pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from auditlog import db
from auditlog.hashing import LogHasher, get_hasher
from auditlog.kafka import dlq_topic, make_producer
from auditlog.note import NoteSigner
from auditlog.observability import configure_logging
from auditlog.settings import describe
from sealer.records import Record, Rejected, Sealable, decode
from sealer.settings import Settings
from sealer.store import Fenced, LogHead, Partitions, load_head, seal

log = structlog.get_logger("sealer")

SEALED_EVENTS = Counter("auditlog_sealer_events_total", "Events sealed", ["log"])
SEALED_BATCHES = Counter("auditlog_sealer_batches_total", "Batches sealed", ["log"])
DEAD_LETTERS = Counter("auditlog_sealer_dead_letters_total", "Records sent to the DLQ", ["log"])
FENCED = Counter("auditlog_sealer_fenced_total", "Seals refused because the head moved", ["log"])
SEAL_SECONDS = Histogram(
    "auditlog_sealer_seal_seconds",
    "Time to seal one batch (PostgreSQL transaction included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = Histogram(
    "auditlog_sealer_batch_events", "Events per sealed batch", buckets=(1, 10, 100, 500, 1000, 5000)
)
LOG_SIZE = Gauge("auditlog_sealer_log_size", "Entries in each owned log", ["log"])
LAG = Gauge("auditlog_sealer_lag", "Records behind the partition's high watermark", ["log"])


@dataclass(slots=True)
class Pending:
    """Records fetched for one partition and not yet sealed."""

    records: list[Record] = field(default_factory=list)
    since: float = 0.0


class Sealer:
    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        dlq: AIOKafkaProducer,
        pool: asyncpg.Pool,
        hasher: LogHasher,
        signer: NoteSigner,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.dlq = dlq
        self.pool = pool
        self.hasher = hasher
        self.signer = signer
        self.clock = clock
        self.heads: dict[TopicPartition, LogHead] = {}
        self.pending: dict[TopicPartition, Pending] = {}
        self.stopping = asyncio.Event()
        self.partitions = Partitions()

    # -- partition ownership -------------------------------------------------------------
    async def assign(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            head = await load_head(
                self.pool, tp.topic, tp.partition, self.settings.origin, self.hasher
            )
            self.heads[tp] = head
            self.pending.pop(tp, None)
            self.consumer.seek(tp, head.next_offset)
            LOG_SIZE.labels(head.log_id).set(head.size)
            log.info("assigned", log=head.log_id, size=head.size, offset=head.next_offset)

    def revoke(self, partitions: set[TopicPartition]) -> None:
        # Unsealed records are dropped: the next owner reads them again from the stored offset.
        for tp in partitions:
            self.heads.pop(tp, None)
            self.pending.pop(tp, None)

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        max_wait_ms = max(1, int(self.settings.batch_max_age * 1000 / 2))
        while not self.stopping.is_set():
            fetched = await self.consumer.getmany(
                timeout_ms=max_wait_ms, max_records=self.settings.batch_max_size
            )
            now = self.clock()
            for tp, records in fetched.items():
                if tp not in self.heads:
                    continue
                pending = self.pending.setdefault(tp, Pending())
                if not pending.records:
                    pending.since = now
                pending.records.extend(records)
            for tp in list(self.pending):
                pending = self.pending[tp]
                if not pending.records:
                    continue
                full = len(pending.records) >= self.settings.batch_max_size
                if full or now - pending.since >= self.settings.batch_max_age:
                    await self.seal_partition(tp)
        await self.drain()

    async def drain(self) -> None:
        for tp in list(self.pending):
            if self.pending[tp].records:
                await self.seal_partition(tp)

    async def seal_partition(self, tp: TopicPartition) -> None:
        pending = self.pending.pop(tp)
        head = self.heads.get(tp)
        if head is None:
            return
        records = [r for r in pending.records if r.offset >= head.next_offset]
        if not records:
            return
        started = time.perf_counter()
        decoded = [decode(r) for r in records]
        items = [d for d in decoded if isinstance(d, Sealable)]
        rejected = [d for d in decoded if isinstance(d, Rejected)]
        if rejected:
            await self.dead_letter(tp, rejected)
        next_offset = records[-1].offset + 1
        await self.partitions.ensure(self.pool, [item.received_at for item in items])
        try:
            async with self.pool.acquire() as conn:
                result = await seal(conn, head, self.hasher, self.signer, items, next_offset)
        except Fenced:
            FENCED.labels(head.log_id).inc()
            log.warning("fenced", log=head.log_id, size=head.size)
            await self.reload(tp)
            return
        self.heads[tp] = result.head
        elapsed = time.perf_counter() - started
        SEAL_SECONDS.observe(elapsed)
        BATCH_SIZE.observe(len(items))
        SEALED_EVENTS.labels(head.log_id).inc(len(items))
        SEALED_BATCHES.labels(head.log_id).inc()
        LOG_SIZE.labels(head.log_id).set(result.head.size)
        highwater = self.consumer.highwater(tp)
        if highwater is not None:
            LAG.labels(head.log_id).set(max(0, highwater - next_offset))
        log.info(
            "sealed",
            log=head.log_id,
            events=len(items),
            dead_letters=len(rejected),
            size=result.head.size,
            first_offset=records[0].offset,
            next_offset=next_offset,
            ms=round(elapsed * 1000, 2),
        )
        with contextlib.suppress(CommitFailedError, IllegalStateError, KafkaError):
            await self.consumer.commit({tp: next_offset})

    async def reload(self, tp: TopicPartition) -> None:
        """After a fence: believe the database, and read again from its offset if still ours."""
        head = await load_head(self.pool, tp.topic, tp.partition, self.settings.origin, self.hasher)
        self.heads[tp] = head
        with contextlib.suppress(IllegalStateError):
            self.consumer.seek(tp, head.next_offset)

    async def dead_letter(self, tp: TopicPartition, rejected: list[Rejected]) -> None:
        """Park rejected records with their reason; acknowledged before their offsets are sealed."""
        topic = dlq_topic(tp.topic)
        futures = []
        for item in rejected:
            rec = item.record
            headers = [
                *(rec.headers or ()),
                ("dlq-reason", item.reason.encode()),
                ("dlq-topic", tp.topic.encode()),
                ("dlq-partition", str(tp.partition).encode()),
                ("dlq-offset", str(rec.offset).encode()),
            ]
            futures.append(await self.dlq.send(topic, rec.value, key=rec.key, headers=headers))
            log.warning(
                "dead_letter", log=self.heads[tp].log_id, offset=rec.offset, reason=item.reason
            )
        await asyncio.gather(*futures)
        DEAD_LETTERS.labels(self.heads[tp].log_id).inc(len(rejected))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sealer: Sealer) -> None:
        self.sealer = sealer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.sealer.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.sealer.assign(set(assigned))


def load_signer(path: Path) -> NoteSigner:
    return NoteSigner.from_skey(path.read_text(encoding="utf-8").strip())


async def run(settings: Settings) -> None:
    configure_logging(settings.log_level)
    log.info("starting", **describe(settings))
    signer = load_signer(settings.signing_key_file)
    hasher = get_hasher(settings.hash_scheme)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    pool = await db.connect_pool(settings.database_url.value, max_size=4)
    try:
        await db.check_schema(pool)
        dlq = make_producer(settings.kafka_bootstrap)
        await dlq.start()
        try:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap,
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                max_partition_fetch_bytes=4 * 1024 * 1024,
            )
            sealer = Sealer(settings, consumer, dlq, pool, hasher, signer)
            consumer.subscribe([settings.topic], listener=_Rebalance(sealer))
            await consumer.start()
            try:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, sealer.stopping.set)
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(sealer.run(), name="seal-loop")
                log.info("stopped")
            finally:
                await consumer.stop()
        finally:
            await dlq.stop()
    finally:
        await pool.close()


def main() -> None:
    settings = Settings.from_env()
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms

        uvloop.run(run(settings))
    except ImportError:
        asyncio.run(run(settings))
