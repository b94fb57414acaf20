"""The Python producer library against the real Kafka broker."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka import AIOKafkaConsumer

from auditlog.core.envelope import Envelope
from auditlog.core.schema import parse_schemas
from auditlog.kafka.clients import dlq_topic, ensure_topics
from auditlog.producer import AuditProducer, EventRejected
from tests.conftest import Services, delete_topics

pytestmark = pytest.mark.integration


async def test_logged_events_are_canonical_envelopes_on_the_topic(services: Services) -> None:
    topic = f"{services.topic}.producer"
    await ensure_topics(services.kafka_bootstrap, topic, partitions=1)
    try:
        await _produce_and_check(services, topic)
    finally:
        await delete_topics(services.kafka_bootstrap, [topic, dlq_topic(topic)])


async def _produce_and_check(services: Services, topic: str) -> None:
    events = [{"message": "lib one", "tenant_id": "t1"}, {"message": "lib two", "actor": "é"}]
    schemas = parse_schemas(
        {"pci_x": {"fields": [{"id": "message", "required": True}, {"id": "tenant_id"}]}}
    )
    async with AuditProducer(services.kafka_bootstrap, topic, schemas=schemas) as producer:
        first = await producer.log(events[0], idempotency_key="k-1", config_id="pci_x")
        (second,) = await producer.log_many(events[1:])
        with pytest.raises(EventRejected) as rejected:
            await producer.log({"actor": "no message"})
        assert rejected.value.errors[0]["source"] == "/event/message"
        with pytest.raises(EventRejected) as unknown:
            await producer.log({"message": "m"}, config_id="pci_unknown")
        assert unknown.value.errors[0]["source"] == "/config_id"

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records = []
        while len(records) < 2:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "the produced records did not arrive"
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    by_hash = {hashlib.sha256(r.value).hexdigest(): r for r in records}
    assert set(by_hash) == {first, second}
    envelope = Envelope.from_bytes(by_hash[first].value)
    assert envelope.event == events[0]
    assert by_hash[first].key == b"t1"
    assert dict(by_hash[first].headers) == {"idempotency-key": b"k-1", "config-id": b"pci_x"}
