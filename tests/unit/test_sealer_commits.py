"""Offsets go to Kafka once a second, for lag monitoring only, and only for owned partitions."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from sealer.settings import Settings
from sealer.store import LogHead
from sealer.worker import Sealer

TP0 = TopicPartition("audit.commits", 0)
TP1 = TopicPartition("audit.commits", 1)


class _Consumer:
    def __init__(self, fail: bool = False) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail = fail

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        if self.fail:
            raise CommitFailedError("rebalance in progress")


def _sealer(consumer: _Consumer) -> Sealer:
    hasher = get_hasher("rfc6962-sha256")
    sealer = Sealer(
        Settings(),
        consumer,  # duck-typed: the part of AIOKafkaConsumer committing calls
        None,  # neither the DLQ nor PostgreSQL is touched here
        None,  # type: ignore[arg-type]
        hasher,
        NoteSigner.generate("commits.test"),
    )
    sealer.heads[TP0] = LogHead("audit.commits-0", "o", hasher.name, 0, b"", 0)
    return sealer


async def test_only_owned_partitions_are_committed_and_each_offset_once() -> None:
    consumer = _Consumer()
    sealer = _sealer(consumer)
    sealer.sealed.update({TP0: 120, TP1: 7})  # TP1 was revoked after its seal
    await sealer.commit_sealed()
    await sealer.commit_sealed()  # nothing sealed since
    assert consumer.commits == [{TP0: 120}]


async def test_a_refused_commit_is_not_an_error() -> None:
    consumer = _Consumer(fail=True)
    sealer = _sealer(consumer)
    sealer.sealed[TP0] = 5
    await sealer.commit_sealed()
    assert consumer.commits == [{TP0: 5}]
    assert sealer.sealed == {}


async def test_the_commit_loop_commits_until_stopping() -> None:
    consumer = _Consumer()
    sealer = _sealer(consumer)
    sealer.sealed[TP0] = 3
    loop = asyncio.create_task(sealer.commit_loop())
    await asyncio.sleep(0)
    sealer.stopping.set()
    await asyncio.wait_for(loop, 5)
    assert consumer.commits == [{TP0: 3}]
