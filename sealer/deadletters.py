"""Dead letters: the records the sealer cannot seal, parked on ``<topic>.dlq`` with a reason.

Each is copied with its key, value and headers, plus ``dlq-reason`` (one of the codes of
sealer/records.py), ``dlq-detail`` (what exactly, at most 1,000 characters), ``dlq-topic``,
``dlq-partition`` and ``dlq-offset``. The seal that moves the partition's offset past them waits
until Kafka acknowledged every one, so nothing is dropped silently (a crash in between can write
the same dead letter twice, never zero times).

The dead-letter topic may take smaller records than the events topic (its own
``max.message.bytes``, or a value compressed well on one topic and not the other). A value
larger than the sealer's limit (1 MiB, Kafka's default record limit) goes without its value at
once; any other copy the DLQ refuses as too large is sent again alone and, refused again,
without its value: ``dlq-value-bytes`` and ``dlq-value-sha256`` take its place. The record
itself stays on the events topic, where ``dlq-offset`` finds it, until the topic's retention
removes it. A record with neither key nor value, which aiokafka cannot send, goes with an empty
value. Without these, the refusal would fail the seal, and every retry of it, and the partition
would never move on.

The producer is not idempotent (sealer/main.py): aiokafka's idempotent producer, once Kafka
refused one of its batches, answers every later batch of that partition with
``OutOfOrderSequenceNumber``, so one oversized dead letter stalled every partition for good (the
hostile-record drill found it). A retried send may write a dead letter twice, as a crash can.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from typing import Final

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from prometheus_client import Counter

from auditlog.kafka.clients import dlq_topic
from sealer.records import MAX_RECORD_BYTES, Rejected

log = structlog.get_logger("sealer")

DEAD_LETTERS = Counter("auditlog_sealer_dead_letters_total", "Records sent to the DLQ", ["log"])
MAX_DETAIL_CHARS: Final = 1000
# What Kafka answers for a record (or its batch) larger than the topic or the client allows.
REFUSED_AS_TOO_LARGE: Final = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

Headers = list[tuple[str, bytes | None]]


def dead_letter_headers(tp: TopicPartition, item: Rejected) -> Headers:
    """The record's own headers and the dead letter's: where it came from and why."""
    detail = item.detail[:MAX_DETAIL_CHARS]
    return [
        *(item.record.headers or ()),
        ("dlq-reason", item.reason.encode()),
        ("dlq-detail", detail.encode("utf-8", "backslashreplace")),
        ("dlq-topic", tp.topic.encode()),
        ("dlq-partition", str(tp.partition).encode()),
        ("dlq-offset", str(item.offset).encode()),
    ]


def without_value(item: Rejected, headers: Headers) -> Headers:
    """The headers of a copy sent without its value: the value's size and SHA-256."""
    value = item.record.value or b""
    return [
        *headers,
        ("dlq-value-bytes", str(len(value)).encode()),
        ("dlq-value-sha256", hashlib.sha256(value).hexdigest().encode()),
    ]


def _value(value: bytes | None, item: Rejected) -> bytes | None:
    """What to send as the dead letter's value: aiokafka sends no record without a key and a
    value (its assertion would fail the seal, every time), so one with neither (a keyless
    tombstone, a record aiokafka could not read) gets an empty value."""
    return b"" if value is None and item.record.key is None else value


class DeadLetters:
    """Sends dead letters through one producer (acks=all, idempotent: auditlog/kafka)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, tp: TopicPartition, log_id: str, rejected: Sequence[Rejected]) -> None:
        """Park ``rejected`` on the DLQ; returns once Kafka acknowledged every one of them."""
        topic = dlq_topic(tp.topic)
        sent = []
        for item in rejected:
            headers = dead_letter_headers(tp, item)
            log.warning(
                "dead_letter",
                log=log_id,
                offset=item.offset,
                reason=item.reason,
                detail=item.detail[:MAX_DETAIL_CHARS],
            )
            future = None
            if len(item.record.value or b"") <= MAX_RECORD_BYTES:  # past it: Kafka's default limit
                with contextlib.suppress(*REFUSED_AS_TOO_LARGE):  # past max_request_size
                    future = await self.producer.send(
                        topic, _value(item.record.value, item), key=item.record.key, headers=headers
                    )
            sent.append((item, headers, future))
        for item, headers, future in sent:
            if future is not None and await self._delivered(future, topic, item, headers):
                continue
            log.warning("dead_letter_without_value", log=log_id, offset=item.offset)
            await self.producer.send_and_wait(
                topic, _value(None, item), key=item.record.key, headers=without_value(item, headers)
            )
        DEAD_LETTERS.labels(log_id).inc(len(rejected))

    async def _delivered(
        self, future: asyncio.Future[object], topic: str, item: Rejected, headers: Headers
    ) -> bool:
        """Whether the copy with its value got through: False when Kafka refused it as too
        large, alone (it may have been refused with the batch it shared the first time)."""
        try:
            await future
        except REFUSED_AS_TOO_LARGE:
            pass
        else:
            return True
        try:
            await self.producer.send_and_wait(
                topic, _value(item.record.value, item), key=item.record.key, headers=headers
            )
        except REFUSED_AS_TOO_LARGE:
            return False
        return True
