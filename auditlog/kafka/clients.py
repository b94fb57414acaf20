"""Kafka client settings shared by ingest, the producer library and the sealer.

The durability contract lives here: producers use ``acks=all`` with idempotence, so a send that
resolved is on the broker's log; consumers never auto-commit, because the sealed offset lives in
PostgreSQL with the sealed batch.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from auditlog.core.envelope import Envelope

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


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def log_id(topic: str, partition: int) -> str:
    """The log behind one partition, named the way Kafka names a TopicPartition."""
    return f"{topic}-{partition}"


def record_key(envelope: Envelope) -> bytes | None:
    """The Kafka key of an event: its tenant, so one tenant's events stay in one log, in order."""
    tenant = envelope.event.get("tenant_id")
    return tenant.encode() if isinstance(tenant, str) else None


def make_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    options = {**PRODUCER_DEFAULTS, **overrides}
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **options)


async def ensure_topics(bootstrap: str, topic: str, partitions: int = DEFAULT_PARTITIONS) -> None:
    """Create the events topic and its dead-letter topic when missing (single-node: RF 1)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=n, replication_factor=1)
            for name, n in ((topic, partitions), (dlq_topic(topic), 1))
            if name not in existing
        ]
        if wanted:
            # A concurrent starter may win the race; the topic is there either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()
