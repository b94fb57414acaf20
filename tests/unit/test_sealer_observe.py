"""Reporting a seal that ended after its partition was taken away must not crash the sealer."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from sealer.batcher import Batch
from sealer.records import Sealable
from sealer.settings import Settings
from sealer.store import LogHead, SealResult
from sealer.timestamps import micros
from sealer.worker import SealBatch, Sealer


def _sealable(offset: int) -> Sealable:
    received = datetime(2026, 11, 26, tzinfo=UTC)
    envelope = Envelope({"message": f"event {offset}"}, format_received_at(received))
    return Sealable(offset, envelope, micros(received), None)


async def test_a_seal_reported_after_its_partition_was_revoked() -> None:
    # A real consumer, never started: it holds no partition, as after a revocation, and
    # aiokafka's highwater() asserts for a partition it does not hold.
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    hasher = get_hasher("rfc6962-sha256")
    sealer = Sealer(
        Settings(),
        consumer,
        None,  # neither the DLQ nor PostgreSQL is touched here
        None,  # type: ignore[arg-type]
        hasher,
        NoteSigner.generate("observe.test"),
    )
    tp = TopicPartition("audit.observe", 0)
    head = LogHead("audit.observe-0", "o", hasher.name, 3, hasher.empty_root(), 3)
    batch: SealBatch = Batch(tp, 0, [_sealable(0), _sealable(1), _sealable(2)])
    before = REGISTRY.get_sample_value("auditlog_sealer_events_total", {"log": head.log_id}) or 0
    sealer._observe(tp, batch, list(batch.records), SealResult(head, "note"), 0, 0.01)
    after = REGISTRY.get_sample_value("auditlog_sealer_events_total", {"log": head.log_id})
    assert after == before + 3
    await consumer.stop()
