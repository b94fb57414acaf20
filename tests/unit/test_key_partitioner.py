"""The producer's partitioner remembers keys but must place every record where Kafka's default
partitioner (murmur2, the Java client's) would: a tenant's events stay in one log."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from auditlog.kafka.clients import KeyPartitioner, make_producer


def test_keyed_records_land_where_the_default_partitioner_puts_them() -> None:
    rng = random.Random(7)
    reference = DefaultPartitioner()
    remembered = KeyPartitioner(limit=50)  # small: the memory starts over many times
    keys = [rng.randbytes(rng.randrange(1, 40)) for _ in range(200)]
    for _ in range(3000):
        key = rng.choice(keys)
        partitions = list(range(rng.choice([1, 3, 4, 12, 64])))
        assert remembered(key, partitions, partitions) == reference(key, partitions, partitions)


def test_the_memory_is_bounded() -> None:
    partitioner = KeyPartitioner(limit=10)
    for i in range(1000):
        partitioner(str(i).encode(), [0, 1, 2, 3], [0, 1, 2, 3])
    assert len(partitioner._known) <= 10


def test_unkeyed_records_go_to_an_available_partition() -> None:
    partitioner = KeyPartitioner()
    assert {partitioner(None, [0, 1, 2, 3], [2]) for _ in range(50)} == {2}
    assert {partitioner(None, [0, 1], []) for _ in range(200)} == {0, 1}


async def test_producers_use_it() -> None:
    producer = make_producer("127.0.0.1:1")  # never started: no connection is made
    try:
        assert isinstance(producer._partitioner, KeyPartitioner)
    finally:
        await producer.stop()
