"""Publishing to Kafka with a bound on what waits for its acknowledgement.

:class:`IngestState` is what the ingest handlers share: the producer, the token cache, the pool,
the rate limits (checked before a request claims anything) and the in-flight slots. A request
claims one slot per event before it sends and gives them back when Kafka answered (or did not
in time): past ``AUDITLOG_INGEST_MAX_IN_FLIGHT`` waiting events, a request gets
:class:`InFlightFull` (503 with ``Retry-After``) instead of a queue that grows without bound. A
send that Kafka did not acknowledge within ``AUDITLOG_INGEST_SEND_TIMEOUT`` is
:class:`KafkaUnavailable`; both are :class:`~auditlog.core.errors.Pushback`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from auditlog.core.envelope import Envelope
from auditlog.core.errors import Pushback
from auditlog.core.schema import Schemas
from auditlog.kafka.clients import make_producer, record_key
from auditlog.pg.tokens import TokenCache
from auditlog.web import requests_store
from auditlog.web.ratelimit import Limits
from ingest.settings import Settings

log = structlog.get_logger("ingest")

# Kafka record headers of one event (idempotency key, its principal, config id).
Headers = list[tuple[str, bytes]]

EVENTS = Counter("auditlog_ingest_events_total", "Events acknowledged by Kafka")
IN_FLIGHT = Gauge(
    "auditlog_ingest_in_flight",
    "Events waiting for Kafka's acknowledgement",
    multiprocess_mode="livesum",  # the sum over live worker processes
)


def kafka_producer(settings: Settings) -> AIOKafkaProducer:
    """Ingest's producer: the shared durability settings (acks=all, idempotent), and the linger
    this service is configured with."""
    return make_producer(
        settings.kafka_bootstrap, settings.kafka_security, linger_ms=settings.kafka_linger_ms
    )


class KafkaUnavailable(Pushback):
    """Kafka did not acknowledge in time; the client should retry."""


class InFlightFull(Pushback):
    """Too many events are waiting for Kafka; the client should back off."""


@dataclass(slots=True)
class IngestState:
    settings: Settings
    producer: AIOKafkaProducer
    tokens: TokenCache
    pool: asyncpg.Pool
    tasks: asyncio.TaskGroup
    schemas: Schemas
    in_flight: int = 0
    # Events a second per token and tenant, charged before a request claims slots or Kafka.
    limits: Limits = field(default_factory=Limits.unlimited)

    def admits(self, n: int) -> bool:
        """Whether ``n`` more events would fit in flight now. Checked before a request's body is
        read and again before it is validated, so that a refused request costs little: when
        clients send faster than Kafka acknowledges, refusals must not eat the CPU the accepted
        requests need (refusing only at :meth:`reserve`, after every event was validated and
        enveloped, cut a saturated worker's goodput by more than half)."""
        return self.in_flight + n <= self.settings.max_in_flight

    def reserve(self, n: int) -> None:
        """Claim ``n`` in-flight slots or push back; :meth:`release` gives them back."""
        if not self.admits(n):
            raise InFlightFull(f"{self.in_flight} events in flight")
        self.in_flight += n
        IN_FLIGHT.inc(n)

    def release(self, n: int) -> None:
        self.in_flight -= n
        IN_FLIGHT.dec(n)

    async def publish_many(self, envelopes: list[Envelope], headers: list[Headers]) -> None:
        self.reserve(len(envelopes))
        try:
            await self._send(envelopes, headers)
        finally:
            self.release(len(envelopes))

    async def _send(self, envelopes: list[Envelope], headers: list[Headers]) -> None:
        """Send and wait for Kafka's ack of every envelope."""
        try:
            # send() itself waits while metadata is missing (Kafka down), so the bound covers it.
            async with asyncio.timeout(self.settings.send_timeout):
                futures = [
                    await self.producer.send(
                        self.settings.topic,
                        env.canonical,
                        key=record_key(env, h),
                        headers=h or None,
                    )
                    for env, h in zip(envelopes, headers, strict=True)
                ]
                if len(futures) == 1:
                    await futures[0]  # a single event's request: no gathering future to build
                else:
                    await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge: {type(exc).__name__}") from exc
        EVENTS.inc(len(envelopes))

    async def start_async(
        self,
        request_id: str,
        token_id: str,
        envelopes: list[Envelope],
        headers: list[Headers],
        result: dict[str, Any],
    ) -> None:
        """Reserve slots, record the pending request, publish in the background.

        Raises Pushback when full, and whatever the request store raises; either way no slot
        stays claimed (a slot lost per failed insert had ingest answering 503 for good once a
        database outage had eaten them all).
        """
        self.reserve(len(envelopes))
        try:
            await requests_store.create(self.pool, request_id, token_id, "log_async")
        except BaseException:
            self.release(len(envelopes))
            raise
        self.tasks.create_task(
            self.publish_async(request_id, envelopes, headers, result),
            name=f"log-async-{request_id}",
        )

    async def publish_async(
        self,
        request_id: str,
        envelopes: list[Envelope],
        headers: list[Headers],
        result: dict[str, Any],
    ) -> None:
        """Background half of log_async: slots were reserved by the handler.

        It never raises: a failure here must not take the service's task group down with it.
        A request whose outcome cannot be recorded stays pending until it expires, and the
        client, never told it succeeded, retries.
        """
        failure: str | None = None
        try:
            await self._send(envelopes, headers)
        except Pushback as exc:
            failure = str(exc)
            log.warning("log_async_failed", request_id=request_id, reason=failure)
        finally:
            self.release(len(envelopes))
        try:
            await requests_store.finish(self.pool, request_id, None if failure else result, failure)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.exception("log_async_unrecorded", request_id=request_id, error=type(exc).__name__)
