"""The fetch loop against a rebalance that lands while it is still handing out one fetch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import NamedTuple

from aiokafka import TopicPartition

from auditlog.core.envelope import Envelope
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from sealer.records import Sealable, decode
from sealer.settings import Settings
from sealer.store import LogHead
from sealer.worker import Judged, SealBatch, Sealer

TP0 = TopicPartition("audit.fetch", 0)
TP1 = TopicPartition("audit.fetch", 1)


class _Record(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def _records(first: int, n: int) -> list[_Record]:
    return [
        _Record(
            offset,
            0,
            None,
            Envelope({"message": f"event {offset}"}, "2026-11-26T00:00:00.000000Z").canonical,
            (),
        )
        for offset in range(first, first + n)
    ]


class _Consumer:
    """Hands out one fetch holding two partitions, then nothing."""

    def __init__(self) -> None:
        self.fetches = [{TP0: _records(0, 10), TP1: _records(200, 10)}]
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[_Record]]:
        await asyncio.sleep(0)
        return self.fetches.pop(0) if self.fetches else {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def _sealer(consumer: _Consumer) -> Sealer:
    hasher = get_hasher("rfc6962-sha256")
    sealer = Sealer(
        Settings(batch_max_size=10, batch_max_age=30),
        consumer,  # duck-typed: the parts of AIOKafkaConsumer the fetch loop calls
        None,  # neither the DLQ nor PostgreSQL is touched here
        None,  # type: ignore[arg-type]
        hasher,
        NoteSigner.generate("fetch.test"),
    )
    sealer.handoff = asyncio.Queue()  # nobody seals in this test: an unbounded hand-off
    for tp in (TP0, TP1):
        sealer.heads[tp] = LogHead(f"audit.fetch-{tp.partition}", "o", hasher.name, 0, b"", 100)
        sealer._reset(tp)
    return sealer


def _queued(sealer: Sealer) -> Iterator[SealBatch]:
    while not sealer.handoff.empty():
        batch = sealer.handoff.get_nowait()
        if batch is not None:
            yield batch


def _offsets(records: list[Judged]) -> list[int]:
    return [r.offset for r in records if isinstance(r, Sealable)]


async def test_records_fetched_before_a_reset_do_not_join_the_new_generation() -> None:
    consumer = _Consumer()
    sealer = _sealer(consumer)
    hand_off = sealer._hand_off

    async def rebalance_meanwhile(batch: SealBatch) -> None:
        # TP0's full batch is handed off first; while the fetch loop waits here, partition 1
        # is assigned afresh (a rebalance): reset, and sought back to its stored head.
        await hand_off(batch)
        sealer._reset(TP1)
        consumer.seek(TP1, 100)
        sealer.stopping.set()

    sealer._hand_off = rebalance_meanwhile  # type: ignore[method-assign]
    await sealer.fetch_loop()
    batches = list(_queued(sealer))
    assert [(b.key, _offsets(b.records)) for b in batches] == [(TP0, list(range(10)))]
    assert consumer.seeks == [(TP1, 100)]


async def test_a_batch_whose_offsets_do_not_increase_is_read_again_not_sealed() -> None:
    consumer = _Consumer()
    sealer = _sealer(consumer)
    generation = sealer.generation[TP1]
    items: list[Judged] = [decode(r) for r in _records(200, 3) + _records(201, 2)]
    # pool is None: reaching the seal would fail loudly instead of passing quietly.
    await sealer.seal_batch(SealBatch(TP1, generation, items))
    assert consumer.seeks == [(TP1, 100)]
    assert sealer.generation[TP1] == generation + 1
