"""The sealer's worker: the fetch loop and the seal worker of one process, joined by a bounded
queue; its dead letters, offset commits to Kafka and housekeeping.

Exactly once: a batch's events, tiles, bundles, checkpoint and the partition's next offset are
written in one transaction, fenced on the log head, so a crash at any instant either sealed the
whole batch (and the new owner starts after it) or nothing (and it is read again). Kafka's
committed offsets are written afterwards, for lag monitoring only, and never read.

The composition root that builds and runs it is sealer/main.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeAlias

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter, Histogram

from auditlog.core.hashing import LogHasher
from auditlog.core.note import NoteSigner
from auditlog.core.schema import NO_CUSTOM_SCHEMAS, Schemas
from auditlog.runtime.eventloop import pause
from sealer import faults
from sealer.batcher import Batch, Batcher
from sealer.claims import Conflict
from sealer.deadletters import DeadLetters
from sealer.health import SealerHealth
from sealer.partitions import Partitions
from sealer.records import SEALER_ERROR, Record, Rejected, Sealable, Window, decode
from sealer.refused import REFUSED, seal_one_by_one
from sealer.rows import prepare
from sealer.settings import Settings
from sealer.store import (
    Fenced,
    LogHead,
    NotWitnessed,
    SealResult,
    Witnessing,
    forget_expired_keys,
    load_head,
    seal,
)
from sealer.unreadable import UNPARSEABLE, Unreadable, read_past_unreadable

log = structlog.get_logger("sealer")

SEALED_EVENTS = Counter("auditlog_sealer_events_total", "Events sealed", ["log"])
SEALED_BATCHES = Counter("auditlog_sealer_batches_total", "Batches sealed", ["log"])
FENCED = Counter("auditlog_sealer_fenced_total", "Seals refused because the head moved", ["log"])
SEAL_SECONDS = Histogram(
    "auditlog_sealer_seal_seconds",
    "Time to seal one batch (PostgreSQL transaction included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = Histogram(
    "auditlog_sealer_batch_events", "Events per sealed batch", buckets=(1, 10, 100, 500, 1000, 5000)
)
# The per-log gauges (entries, lag, last seal, checkpoint age) are sealer/health.py's.
DUPLICATES = Counter(
    "auditlog_sealer_duplicates_total", "Records skipped: idempotency key already sealed", ["log"]
)
CONFLICTS = Counter(
    "auditlog_sealer_idempotency_conflicts_total",
    "Records dead-lettered: their idempotency key sealed another event",
    ["log"],
)
BATCH_AGE = Histogram(
    "auditlog_sealer_batch_age_seconds",
    "Age of a batch's oldest record when it is sealed",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SEAL_WAIT = Histogram(
    "auditlog_sealer_seal_wait_seconds",
    "Time a closed batch waited for a seal slot and for its partition's previous seal",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
RETRY_MIN, RETRY_MAX = 0.5, 10.0
DECODE_CHUNK = 256  # records decoded between two turns of the event loop (~1 ms)
BUSY_RECHECK = 0.005  # how soon the fetch loop looks again at a batch held back by its seal
HANDOFF_DEPTH = 4  # closed batches waiting for the seal worker; a full queue stops fetching
PARALLEL_SEALS = 4  # batches being sealed at once, each partition's in order
REVOKE_GRACE = 10.0  # seconds a revocation waits for the partition's seals under way
COMMIT_TIMEOUT = 2.0
COMMIT_INTERVAL = 1.0  # seconds between commits of sealed offsets to Kafka (lag only)

TP: TypeAlias = TopicPartition
Judged: TypeAlias = Sealable | Rejected  # a record, decoded: sealable or a dead letter
SealBatch = Batch[TopicPartition, Judged]


class Sealer:
    """Fetch loop and seal worker of one sealer process, joined by a bounded queue.

    The fetch loop polls Kafka, decodes the records as they come, buffers them per partition in
    the :class:`Batcher` and puts each closed batch on the queue; when the queue is full it
    blocks, which stops fetching: that is the back-pressure. The seal worker takes batches in
    order and seals each in one transaction. Decoding on the fetch side is what lets one process
    use two cores: the next batch is parsed and validated while PostgreSQL works on the current
    one.
    """

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        dlq: AIOKafkaProducer,
        pool: asyncpg.Pool,
        hasher: LogHasher,
        signer: NoteSigner,
        *,
        schemas: Schemas = NO_CUSTOM_SCHEMAS,
        witnessing: Witnessing | None = None,
        health: SealerHealth | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.dead_letters = DeadLetters(dlq)
        self.pool = pool
        self.hasher = hasher
        self.signer = signer
        self.clock = clock
        self.wall_clock = wall_clock  # what received times are judged against (records.Window)
        self.heads: dict[TP, LogHead] = {}
        self.generation: dict[TP, int] = {}
        self.batcher: Batcher[TP, Judged] = Batcher(
            settings.batch_max_size, settings.batch_max_age, clock, settings.batch_min_interval
        )
        self.handoff: asyncio.Queue[SealBatch | None] = asyncio.Queue(HANDOFF_DEPTH)
        # Seals of different partitions run side by side (each on its own connection, so one
        # process keeps several PostgreSQL backends busy); a partition's seals run in order,
        # each chained to the one before. The semaphore bounds the batches in flight.
        self.slots = asyncio.Semaphore(PARALLEL_SEALS)
        self.tails: dict[TP, asyncio.Task[None]] = {}
        self.in_flight: collections.Counter[TP] = collections.Counter()
        self.backoff: dict[TP, float] = {}
        self.sealed: dict[TP, int] = {}  # next offsets sealed and not yet committed to Kafka
        self.stopping = asyncio.Event()
        self.partitions = Partitions()
        self.window = timedelta(seconds=settings.idempotency_window)
        self.schemas = schemas
        self.witnessing = witnessing
        self.health = health or SealerHealth(settings.ready_max_seal_age)

    # -- partition ownership -------------------------------------------------------------
    def _reset(self, tp: TP) -> None:
        """Forget what was fetched for ``tp``: batches already queued become stale."""
        self.generation[tp] = self.generation.get(tp, 0) + 1
        self.batcher.drop(tp)

    async def _load_head(self, tp: TP) -> LogHead:
        """The partition's stored head; a new log is born signed (and witnessed, if required)."""
        return await load_head(
            self.pool,
            tp.topic,
            tp.partition,
            self.settings.origin,
            self.hasher,
            signer=self.signer,
            witnessing=self.witnessing,
            legacy_name=self.settings.legacy_key_name,
        )

    async def assign(self, partitions: set[TP]) -> None:
        for tp in partitions:
            head = await self._load_head(tp)
            self.heads[tp] = head
            self._reset(tp)
            self.consumer.seek(tp, head.next_offset)
            sealed_at = await self.pool.fetchval(
                "SELECT extract(epoch FROM updated_at)::float8 FROM logs WHERE log_id = $1",
                head.log_id,
            )
            self.health.assigned(tp, head.log_id, head.size, sealed_at)
            log.info("assigned", log=head.log_id, size=head.size, offset=head.next_offset)

    async def revoke(self, partitions: set[TP]) -> None:
        # Let the seals already under way finish first, so the next owner rarely has to be
        # fenced. Unsealed records are dropped: the next owner reads them again from the stored
        # offset.
        # Bounded: the group's rebalance waits for this callback, and fencing keeps a seal that
        # outlives it from doing harm.
        under_way = [self.tails[tp] for tp in partitions if tp in self.tails]
        if under_way:
            await asyncio.wait(under_way, timeout=REVOKE_GRACE)
        for tp in partitions:
            self.heads.pop(tp, None)
            self._reset(tp)
            self.health.revoked(tp)
            log.info("revoked", topic=tp.topic, partition=tp.partition)

    # -- the two loops -------------------------------------------------------------------
    async def fetch_loop(self) -> None:
        try:
            while not self.stopping.is_set():
                deadline = self.batcher.next_deadline(self._idle, BUSY_RECHECK)
                wait = self.settings.batch_max_age if deadline is None else deadline
                fetched = await self._fetch(max(1, int(wait * 1000)))
                # Each partition's generation as these records were fetched, read before any
                # await: a rebalance while this loop decodes or waits on a full hand-off queue
                # resets partitions whose records are still in `fetched`, and those records,
                # from the old read position, must not join the new generation (they would be
                # sealed twice, out of order, once the new position is read).
                fetched_in = {tp: self.generation.get(tp) for tp in fetched if tp in self.heads}
                for tp, records in fetched.items():
                    generation = fetched_in.get(tp)
                    if generation is None or self.generation.get(tp) != generation:
                        continue
                    items = await self._decode(records)
                    if self.generation.get(tp) != generation:
                        continue  # reset while decoding: these are read again from its head
                    for batch in self.batcher.add(tp, generation, items):
                        await self._hand_off(batch)
                for batch in self.batcher.expired(self._idle):
                    await self._hand_off(batch)
            for batch in self.batcher.drain():
                await self._hand_off(batch)
        finally:
            await self.handoff.put(None)  # tells the seal worker to finish

    async def _fetch(self, timeout_ms: int) -> dict[TP, list[Record]]:
        limit = self.settings.batch_max_size
        try:
            fetched: dict[TP, list[Record]] = await self.consumer.getmany(
                timeout_ms=timeout_ms, max_records=limit
            )
        except UNPARSEABLE:
            # A record aiokafka cannot parse (sealer/unreadable.py): read every partition again
            # from its head, one record at a time, to find it and pass it by.
            log.warning("unreadable_fetch", partitions=len(self.heads))
            owned = list(self.heads)
            for tp in owned:
                self._rewind(tp)
            return await read_past_unreadable(self.consumer, owned, limit)
        return fetched

    def busy(self, tp: TP) -> bool:
        """Records of ``tp`` were read and wait in a batch, or for their seal to end."""
        return self.in_flight[tp] > 0 or self.batcher.holds(tp)

    def next_offset(self, tp: TP) -> int | None:
        head = self.heads.get(tp)
        return None if head is None else head.next_offset

    def _idle(self, tp: TP) -> bool:
        """No batch of ``tp`` is queued or being sealed: its next one may close by age."""
        return not self.in_flight[tp]

    async def _hand_off(self, batch: SealBatch) -> None:
        self.in_flight[batch.key] += 1  # until its seal ends (_seal_in_turn)
        await self.handoff.put(batch)

    async def _decode(self, records: list[Record]) -> list[Judged]:
        # Records are judged as they are fetched, so a batch is ready to seal the moment it
        # closes (a batch held back by its partition's seal would otherwise be decoded only
        # after that seal ended). A few hundred at a time: decoding thousands at once held the
        # event loop for up to ~25 ms, and every seal under way waits for the loop between its
        # round trips.
        # Each sealable record's row, entry and leaf hash are made here too (sealer/rows.py):
        # its seal, on the path from the batch closing to its commit, only numbers the rows.
        items = self._judge(records[:DECODE_CHUNK])
        for start in range(DECODE_CHUNK, len(records), DECODE_CHUNK):
            await asyncio.sleep(0)
            items += self._judge(records[start : start + DECODE_CHUNK])
        return items

    def _judge(self, records: list[Record]) -> list[Judged]:
        schemas, hasher = self.schemas, self.hasher
        settings = self.settings
        window = Window.around(self.wall_clock(), settings.max_past, settings.max_future)
        try:
            items = [decode(r, schemas, window) for r in records]
            for i, item in enumerate(items):
                if type(item) is Sealable:
                    item.prepared = prepare(item, hasher)
                elif isinstance(item, Rejected) and isinstance(item.record, Unreadable):
                    items[i] = item.record.rejected()
        except Exception:  # noqa: BLE001 - no record may stop the sealer: find which one
            return [self._judge_one(r, window) for r in records]
        return items

    def _judge_one(self, record: Record, window: Window) -> Judged:
        try:
            item = decode(record, self.schemas, window)
            if type(item) is Sealable:
                item.prepared = prepare(item, self.hasher)
            elif type(record) is Unreadable:
                item = record.rejected()
        except Exception as exc:  # noqa: BLE001 - see _unforeseen
            return self._unforeseen(record, exc)
        return item

    def _unforeseen(self, record: Record, exc: Exception) -> Rejected:
        """decode() and prepare() raise for no record (tests/unit/test_records_fuzz.py); should
        one of them still raise, that is a bug, and the record a dead letter rather than the end
        of the sealer, restarted at the same offset, and of every sealer after it."""
        log.error("record_failed", offset=record.offset, exc_info=exc)
        return Rejected(record.offset, SEALER_ERROR, record, f"{type(exc).__name__}: {exc}")

    async def seal_loop(self) -> None:
        async with asyncio.TaskGroup() as seals:
            while (batch := await self.handoff.get()) is not None:
                await self.slots.acquire()
                previous = self.tails.get(batch.key)
                self.tails[batch.key] = seals.create_task(self._seal_in_turn(previous, batch))

    async def _seal_in_turn(self, previous: asyncio.Task[None] | None, batch: SealBatch) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])  # its failure was handled (or ends the group)
            SEAL_WAIT.observe(self.clock() - batch.closed_at)
            await self._seal_or_rewind(batch)
        finally:
            self.in_flight[batch.key] -= 1
            self.slots.release()

    async def _seal_or_rewind(self, batch: SealBatch) -> None:
        tp = batch.key
        if self.generation.get(tp) != batch.generation:
            return  # fetched before a reset of the partition's read position
        try:
            await self.seal_batch(batch)
            self.backoff.pop(tp, None)
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            KafkaError,
            NotWitnessed,
        ) as exc:
            # PostgreSQL or Kafka failed mid-batch: nothing of it is sealed, or all of it is and
            # the next seal will be fenced and reload. Read the partition again from the last
            # head we know, after a pause (which holds back only this partition's seals).
            log.exception("seal_failed", error=type(exc).__name__)
            self._rewind(tp)
            delay = self.backoff.get(tp, RETRY_MIN)
            await asyncio.sleep(delay)
            self.backoff[tp] = min(delay * 2, RETRY_MAX)

    def _rewind(self, tp: TP) -> None:
        """Drop what was fetched for ``tp`` and read again from its head's next offset."""
        head = self.heads.get(tp)
        if head is None:
            return
        self._reset(tp)
        with contextlib.suppress(IllegalStateError):
            self.consumer.seek(tp, head.next_offset)

    async def seal_batch(self, batch: SealBatch) -> None:
        tp = batch.key
        head = self.heads.get(tp)
        if head is None:
            return
        records = [r for r in batch.records if r.offset >= head.next_offset]
        if not records:
            return
        if any(b.offset <= a.offset for a, b in itertools.pairwise(records)):
            # Cannot happen while the generations hold (fetch_loop); should it ever, sealing
            # this batch would log a record twice or out of order. Read the partition again.
            log.error("batch_out_of_order", log=head.log_id, first_offset=records[0].offset)
            self._rewind(tp)
            return
        started = time.perf_counter()
        items = [d for d in records if isinstance(d, Sealable)]
        rejected = [d for d in records if isinstance(d, Rejected)]
        if rejected:
            await self.dead_letters.send(tp, head.log_id, rejected)
            if faults.armed is not None:
                faults.armed.reach("dead-letters-sent")
        next_offset = records[-1].offset + 1
        await self.partitions.ensure(self.pool, head.log_id, [item.received_us for item in items])
        refused = 0
        try:
            async with self.pool.acquire() as conn:

                async def seal_on(at: LogHead, some: Sequence[Sealable], upto: int) -> SealResult:
                    hasher, signer, window, witnessing = (
                        self.hasher, self.signer, self.window, self.witnessing
                    )  # fmt: skip
                    return await seal(
                        conn, at, hasher, signer, some, upto, window, witnessing, conflicted,
                        legacy_name=self.settings.legacy_key_name,
                    )  # fmt: skip

                async def conflicted(conflicts: Sequence[Conflict]) -> None:
                    # Before the seal commits, as every dead letter it passes by (a seal retried
                    # after this may send them twice, never zero times).
                    await self.dead_letters.send(tp, head.log_id, [c.rejected() for c in conflicts])
                    CONFLICTS.labels(head.log_id).inc(len(conflicts))

                try:
                    result = await seal_on(head, items, next_offset)
                except REFUSED:
                    # A value no rule of decode() foresaw (sealer/refused.py): one at a time.
                    log.exception("batch_refused", log=head.log_id, first_offset=records[0].offset)
                    result, refused = await seal_one_by_one(
                        seal_on, self.dead_letters, tp, head, items, next_offset
                    )
        except Fenced:
            FENCED.labels(head.log_id).inc()
            log.warning("fenced", log=head.log_id, size=head.size)
            await self.reload(tp)
            return
        if tp in self.heads:  # not revoked while this seal ran past the revocation's grace
            self.heads[tp] = result.head
        dead = len(rejected) + refused + len(result.conflicts)
        self._observe(tp, batch, records, result, dead, time.perf_counter() - started)
        self.sealed[tp] = next_offset  # committed to Kafka by commit_loop

    async def commit_loop(self) -> None:
        """Commit the sealed offsets to Kafka every COMMIT_INTERVAL seconds, until stopping.

        For lag monitoring only (the stored offsets in PostgreSQL are the truth), so once a
        second is plenty: a commit per seal cost a request per batch.
        """
        while not self.stopping.is_set():
            await pause(self.stopping, COMMIT_INTERVAL)
            await self.commit_sealed()

    async def commit_sealed(self) -> None:
        """Commit what was sealed since the last commit, of the partitions still owned."""
        offsets = {tp: offset for tp, offset in self.sealed.items() if tp in self.heads}
        self.sealed.clear()
        if not offsets:
            return
        # Never worth waiting for: during a rebalance the group coordinator may hold a commit
        # back, and a partition may be gone by the time it is answered.
        with contextlib.suppress(CommitFailedError, IllegalStateError, KafkaError, TimeoutError):
            async with asyncio.timeout(COMMIT_TIMEOUT):
                await self.consumer.commit(offsets)

    def _observe(
        self,
        tp: TP,
        batch: SealBatch,
        records: list[Judged],
        result: SealResult,
        dead: int,
        elapsed: float,
    ) -> None:
        log_id = result.head.log_id
        sealed = len(records) - dead - result.duplicates
        SEAL_SECONDS.observe(elapsed)
        BATCH_SIZE.observe(sealed)
        BATCH_AGE.observe(self.clock() - batch.opened_at)
        SEALED_EVENTS.labels(log_id).inc(sealed)
        SEALED_BATCHES.labels(log_id).inc()
        DUPLICATES.labels(log_id).inc(result.duplicates)
        # A seal may end after its partition was revoked (it outlived the revocation's grace):
        # aiokafka asserts on the highwater of a partition it no longer holds.
        highwater = self.consumer.highwater(tp) if tp in self.consumer.assignment() else None
        lag = None if highwater is None else max(0, highwater - result.head.next_offset)
        if tp in self.heads:
            self.health.sealed(tp, log_id, result.head.size, lag)
        log.info(
            "sealed",
            log=log_id,
            events=sealed,
            dead_letters=dead,
            duplicates=result.duplicates,
            size=result.head.size,
            first_offset=records[0].offset,
            next_offset=result.head.next_offset,
            ms=round(elapsed * 1000, 2),
        )

    async def reload(self, tp: TP) -> None:
        """After a fence: believe the database, and read again from its offset if still ours."""
        head = await self._load_head(tp)
        if tp not in self.heads:
            return  # revoked meanwhile
        self.heads[tp] = head
        self._rewind(tp)

    async def housekeeping(self) -> None:
        """Forget expired idempotency keys now and then."""
        while not self.stopping.is_set():
            await pause(self.stopping, 60)
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await forget_expired_keys(self.pool, self.window)
