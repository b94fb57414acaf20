"""The Python producer library: publish audit events straight to Kafka.

    from auditlog.producer import AuditProducer

    async with AuditProducer("127.0.0.1:19092") as producer:
        event_hash = await producer.log({"message": "Security updated", "actor": "dennis"})

It builds and hashes envelopes exactly as the ingest service does (same validation, same
canonical bytes), and :meth:`AuditProducer.log` returns the event hash only after Kafka
acknowledged the record (``acks=all``, idempotent producer): a returned hash is durable.

Over TLS or SASL, pass ``security=``: a `KafkaSecurity` (``from auditlog.producer import
KafkaSecurity``), built directly or with ``KafkaSecurity.from_env(Env())`` from the
``AUDITLOG_KAFKA_*`` variables the services read (docs/kafka-security.md).

Errors: :class:`auditlog.core.errors.InvalidEvent` for an event the standard schema rejects (its
``errors`` attribute lists Pangea-style error items), :class:`ProducerUnavailable` (a
``Pushback``) when Kafka does not acknowledge in time or too many events are in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka.errors import KafkaError

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.errors import InvalidEvent, Pushback
from auditlog.core.schema import (
    NO_CUSTOM_SCHEMAS,
    Schemas,
    error_item,
    validate_event,
    validate_signature_fields,
)
from auditlog.kafka.clients import make_producer, record_key
from auditlog.kafka.security import PLAINTEXT, KafkaSecurity
from auditlog.runtime.settings import DEFAULT_TOPIC

# KafkaSecurity is part of this library's interface (``security=``): importable from here.
__all__ = ["AuditProducer", "EventRejected", "KafkaSecurity", "ProducerUnavailable"]


class ProducerUnavailable(Pushback):
    """Kafka did not acknowledge in time, or the in-flight bound is reached; retry later."""


class EventRejected(InvalidEvent):
    """The event fails the standard schema; ``errors`` lists each problem."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['source']}: {e['detail']}" for e in errors))
        self.errors = errors


class AuditProducer:
    def __init__(
        self,
        bootstrap: str,
        topic: str = DEFAULT_TOPIC,
        *,
        max_in_flight: int = 10_000,
        schemas: Schemas = NO_CUSTOM_SCHEMAS,
        ack_timeout: float = 10.0,
        security: KafkaSecurity = PLAINTEXT,
        **kafka_options: Any,
    ) -> None:
        self.topic = topic
        self._producer = make_producer(bootstrap, security, **kafka_options)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._ack_timeout = ack_timeout
        self._schemas = schemas

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is pending and close."""
        await self._producer.stop()

    async def __aenter__(self) -> AuditProducer:
        await self.start()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.stop()

    def envelope(
        self,
        event: Mapping[str, Any],
        *,
        signature: str | None = None,
        public_key: str | None = None,
        received_at: datetime | None = None,
        config_id: str | None = None,
    ) -> Envelope:
        """Validate ``event`` (against ``config_id``'s schema) and build its envelope, as ingest
        would."""
        schema = self._schemas.for_config(config_id)
        if schema is None:
            raise EventRejected(
                [
                    error_item(
                        "UnknownConfigID",
                        f"no audit schema for config_id {config_id!r}",
                        "/config_id",
                    )
                ]
            )
        item: dict[str, Any] = {"event": dict(event)}
        if signature is not None:
            item["signature"] = signature
        if public_key is not None:
            item["public_key"] = public_key
        errors = validate_event(item["event"], "/event", schema)
        errors += validate_signature_fields(item, "")
        if errors:
            raise EventRejected(errors)
        env = Envelope(
            event=item["event"],
            received_at=format_received_at(received_at or datetime.now(UTC)),
            signature=signature,
            public_key=public_key,
        )
        _ = env.canonical  # raises InvalidEvent for what cannot be canonical
        return env

    async def log(
        self,
        event: Mapping[str, Any],
        *,
        signature: str | None = None,
        public_key: str | None = None,
        idempotency_key: str | None = None,
        config_id: str | None = None,
    ) -> str:
        """Publish one event; returns its hash (hex) once Kafka acknowledged it."""
        env = self.envelope(event, signature=signature, public_key=public_key, config_id=config_id)
        await self._send([env], idempotency_key=idempotency_key, config_id=config_id)
        return env.event_hash.hex()

    async def log_many(self, events: Sequence[Mapping[str, Any]]) -> list[str]:
        """Publish several events with one wait for all acknowledgements; hashes in order."""
        envs = [self.envelope(e) for e in events]
        await self._send(envs)
        return [e.event_hash.hex() for e in envs]

    async def _send(
        self,
        envs: Sequence[Envelope],
        *,
        idempotency_key: str | None = None,
        config_id: str | None = None,
    ) -> None:
        if len(envs) > self._max_in_flight:
            raise ProducerUnavailable(f"{len(envs)} events exceed max_in_flight")
        headers: list[tuple[str, bytes]] = []
        if idempotency_key is not None:
            headers.append(("idempotency-key", idempotency_key.encode()))
        if config_id is not None:
            headers.append(("config-id", config_id.encode()))
        acquired = 0
        try:
            async with asyncio.timeout(self._ack_timeout):
                for _ in envs:
                    await self._slots.acquire()
                    acquired += 1
                futures = [
                    await self._producer.send(
                        self.topic,
                        env.canonical,
                        key=record_key(env, headers),
                        headers=headers or None,
                    )
                    for env in envs
                ]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            raise ProducerUnavailable(f"Kafka did not acknowledge: {type(exc).__name__}") from exc
        finally:
            for _ in range(acquired):
                self._slots.release()
