"""Kafka client settings shared by ingest, the producer library and the sealer.

The durability contract lives here: producers use ``acks=all`` with idempotence, so a send that
resolved is on the broker's log; consumers never auto-commit, because the sealed offset lives in
PostgreSQL with the sealed batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from auditlog.core.envelope import Envelope
from auditlog.kafka.security import PLAINTEXT, KafkaSecurity

# Large batches and a short linger: one in-flight batch per partition is aiokafka's limit, so
# throughput per partition is batch size / round trip.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 2,
    "max_batch_size": 512 * 1024,
    "max_request_size": 4 * 1024 * 1024,
    "compression_type": "lz4",
    "request_timeout_ms": 10_000,
}

DEFAULT_PARTITIONS = 4
# Replicas of a topic this code creates on a cluster of at least this many brokers, and the
# replicas an acks=all write must reach: one broker may fail without losing an acknowledged
# record or refusing writes.
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2

# Record headers the sealer reads (docs/kafka-messages.md): the retry key, and who produced the
# record, the namespace of its key. Ingest sends ``token:<token_id>``; a record without the
# header was written by some other Kafka client, whose principal is ``kafka``.
IDEMPOTENCY_KEY_HEADER: Final = "idempotency-key"
PRINCIPAL_HEADER: Final = "principal"
KAFKA_PRINCIPAL: Final = "kafka"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def log_id(topic: str, partition: int) -> str:
    """The log behind one partition, named the way Kafka names a TopicPartition."""
    return f"{topic}-{partition}"


def record_key(
    envelope: Envelope, headers: Sequence[tuple[str, bytes | None]] | None = None
) -> bytes | None:
    """The Kafka key of an event: its tenant, so one tenant's events stay in one log, in order.

    An event without a tenant but with an idempotency key (``headers``) is keyed by that key's
    namespace, ``idempotency-key\n<principal>\n<key>``, so every retry of it lands on the same
    partition, where the sealer seals one and skips the others in one log's order (the sealer's
    claim, sealer/claims.py, still holds across partitions, for records any client keyed
    otherwise). Without either, no key: Kafka spreads such events over the partitions.
    """
    tenant = envelope.event.get("tenant_id")
    if isinstance(tenant, str):
        return tenant.encode()
    key = principal = None
    for name, value in headers or ():
        if name == IDEMPOTENCY_KEY_HEADER and key is None:
            key = value
        elif name == PRINCIPAL_HEADER and principal is None:
            principal = value
    if key is None:
        return None
    return b"idempotency-key\n" + (principal or KAFKA_PRINCIPAL.encode()) + b"\n" + key


class KeyPartitioner:
    """Kafka's default partitioning, remembered per key.

    A keyed record goes where the Java client would put it (murmur2 of the key, so every client
    of the topic agrees where a tenant's events go); the hash is pure Python in aiokafka and was
    ~2 % of an ingest worker's CPU, while the same few tenants' keys come back all day. At most
    ``limit`` keys are remembered (idempotency keys are new each time): past that, the memory
    starts over. Records without a key go to a random available partition, as before.
    """

    def __init__(self, limit: int = 65_536) -> None:
        self.limit = limit
        self._known: dict[tuple[bytes, int], int] = {}
        self._unkeyed = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(self._unkeyed(key, all_partitions, available))
        count = len(all_partitions)
        index = self._known.get((key, count))
        if index is None:
            if len(self._known) >= self.limit:
                self._known.clear()
            index = self._known[(key, count)] = (murmur2(key) & 0x7FFFFFFF) % count
        return all_partitions[index]


def make_producer(
    bootstrap: str, security: KafkaSecurity = PLAINTEXT, **overrides: Any
) -> AIOKafkaProducer:
    options = {
        "partitioner": KeyPartitioner(),
        **PRODUCER_DEFAULTS,
        **security.client_options(),
        **overrides,
    }
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **options)


def make_consumer(
    bootstrap: str, security: KafkaSecurity = PLAINTEXT, **options: Any
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, **security.client_options(), **options)


def make_admin(bootstrap: str, security: KafkaSecurity = PLAINTEXT) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_options())


async def ensure_topics(
    bootstrap: str,
    topic: str,
    partitions: int = DEFAULT_PARTITIONS,
    *,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Create the events topic and its dead-letter topic when missing: replicated 3 times with
    ``min.insync.replicas=2`` on a cluster of 3 brokers or more, once on a smaller one."""
    admin = make_admin(bootstrap, security)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        replicas = REPLICATION_FACTOR if brokers >= REPLICATION_FACTOR else 1
        configs = {"min.insync.replicas": str(MIN_INSYNC_REPLICAS)} if replicas > 1 else {}
        wanted = [
            NewTopic(name, num_partitions=n, replication_factor=replicas, topic_configs=configs)
            for name, n in ((topic, partitions), (dlq_topic(topic), 1))
            if name not in existing
        ]
        if wanted:
            # A concurrent starter may win the race; the topic is there either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()
