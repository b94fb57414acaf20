"""Ingest's Kafka producer takes its linger from the settings, keeping the shared durability."""

from __future__ import annotations

from ingest.publisher import kafka_producer
from ingest.settings import Settings


async def test_the_producer_lingers_as_configured_and_stays_durable() -> None:
    for linger_ms in (0, 5, 20):
        settings = Settings(kafka_bootstrap="127.0.0.1:1", kafka_linger_ms=linger_ms)
        producer = kafka_producer(settings)  # never started: no connection is made
        try:
            assert producer._message_accumulator._linger_time == linger_ms / 1000
            assert producer._sender._acks == -1  # acks=all
            assert producer._txn_manager is not None  # idempotence on
        finally:
            await producer.stop()
