"""The ingest service: Pangea-compatible log endpoints in front of Kafka.

Durability contract: a request is answered with success only after Kafka acknowledged every
event it carried (``acks=all``, idempotent producer). Anything short of that is an error the
client can retry; nothing is acknowledged from memory.

Composition root: :func:`lifespan` opens the PostgreSQL pool (tokens) and the Kafka producer
and hands them to the handlers as ``request.state.ingest``. Shutdown order: stop accepting
requests (uvicorn), let in-flight sends finish (``producer.stop`` flushes), close the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auditlog import db
from auditlog.envelope import Envelope, format_received_at
from auditlog.errors import InvalidEvent, Pushback
from auditlog.kafka import make_producer
from auditlog.observability import configure_logging
from auditlog.webapp import build_app
from auditlog.pangea_http import (
    PangeaResponse,
    bearer_token,
    error_item,
    success,
    unauthorized,
    unavailable,
    validation_error,
)
from auditlog.settings import describe
from auditlog.tokens import TokenCache, TokenInfo
from auditlog.schema import validate_event, validate_signature_fields
from ingest.settings import Settings

log = structlog.get_logger("ingest")

EVENTS = Counter("auditlog_ingest_events_total", "Events acknowledged by Kafka")
REJECTED = Counter("auditlog_ingest_rejected_total", "Requests rejected", ["reason"])
IN_FLIGHT = Gauge("auditlog_ingest_in_flight", "Events waiting for Kafka's acknowledgement")


class KafkaUnavailable(Pushback):
    """Kafka did not acknowledge in time; the client should retry."""


class InFlightFull(Pushback):
    """Too many events are waiting for Kafka; the client should back off."""


@dataclass(slots=True)
class IngestState:
    settings: Settings
    producer: AIOKafkaProducer
    tokens: TokenCache
    in_flight: int = 0

    async def publish(self, envelopes: list[Envelope], key: bytes | None) -> None:
        """Send and wait for Kafka's ack of every envelope, within the in-flight bound."""
        n = len(envelopes)
        if self.in_flight + n > self.settings.max_in_flight:
            raise InFlightFull(f"{self.in_flight} events in flight")
        self.in_flight += n
        IN_FLIGHT.inc(n)
        try:
            # send() itself waits while metadata is missing (Kafka down), so the bound covers it.
            async with asyncio.timeout(self.settings.send_timeout):
                futures = [
                    await self.producer.send(self.settings.topic, env.canonical, key=key)
                    for env in envelopes
                ]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge: {type(exc).__name__}") from exc
        finally:
            self.in_flight -= n
            IN_FLIGHT.dec(n)
        EVENTS.inc(n)


def _state(request: Request) -> IngestState:
    state: IngestState = request.state.ingest
    return state


async def _authorize(request: Request, scope: str) -> TokenInfo | None:
    token = bearer_token(request)
    if token is None:
        return None
    info = await _state(request).tokens.resolve(token)
    if info is None or not info.allows(scope):
        return None
    return info


def _parse_body(raw: bytes) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    # Pangea's SDKs send JSON without a JSON content type, so the body is parsed regardless.
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, [error_item("InvalidJSON", f"request body is not JSON: {exc}", "/")]
    if not isinstance(body, dict):
        return None, [error_item("InvalidObject", "request body must be a JSON object", "/")]
    return body, []


def _build_envelope(
    item: dict[str, Any], token: TokenInfo, pointer: str, received_at: str
) -> tuple[Envelope | None, list[dict[str, str]]]:
    event = item.get("event")
    errors = validate_event(event, f"{pointer}/event")
    errors += validate_signature_fields(item, pointer)
    if errors:
        return None, errors
    assert isinstance(event, dict)
    if token.tenant_id is not None:
        tenant = event.get("tenant_id")
        if tenant is None and item.get("signature") is None:
            event = {**event, "tenant_id": token.tenant_id}
        elif tenant != token.tenant_id:
            source = f"{pointer}/event/tenant_id"
            return None, [
                error_item("InvalidTenant", "the token may only log for its own tenant", source)
            ]
    try:
        envelope = Envelope(
            event=event,
            received_at=received_at,
            signature=item.get("signature"),
            public_key=item.get("public_key"),
        )
        _ = envelope.canonical  # rejects what cannot be canonical before it reaches Kafka
    except InvalidEvent as exc:
        return None, [error_item("InvalidEvent", str(exc), f"{pointer}/event")]
    return envelope, []


async def log_v1(request: Request) -> Response:
    token = await _authorize(request, "log")
    if token is None:
        REJECTED.labels("unauthorized").inc()
        return unauthorized(request)
    body, errors = _parse_body(await request.body())
    if body is None:
        REJECTED.labels("validation").inc()
        return validation_error(request, errors)
    verbose = body.get("verbose", False)
    if not isinstance(verbose, bool):
        errors.append(error_item("InvalidBoolean", "'/verbose' must be a boolean", "/verbose"))
    received_at = format_received_at(datetime.now(UTC))
    envelope, item_errors = _build_envelope(body, token, "", received_at)
    errors += item_errors
    if errors or envelope is None:
        REJECTED.labels("validation").inc()
        return validation_error(request, errors)
    tenant = envelope.event.get("tenant_id")
    key = tenant.encode() if isinstance(tenant, str) else None
    try:
        await _state(request).publish([envelope], key)
    except Pushback as exc:
        REJECTED.labels(type(exc).__name__).inc()
        log.warning("pushback", reason=str(exc))
        return unavailable(request, "Service temporarily unavailable, retry later")
    result: dict[str, Any] = {"hash": envelope.event_hash.hex()}
    if verbose:
        result["envelope"] = envelope.to_dict()
    return success(request, result)


async def healthz(request: Request) -> Response:
    return PangeaResponse(request, "Success", {"status": "ok"}, "alive")


async def readyz(request: Request) -> Response:
    producer = _state(request).producer
    try:
        async with asyncio.timeout(2):
            await producer.client.fetch_all_metadata()
    except (KafkaError, TimeoutError):
        return unavailable(request, "Kafka is not reachable")
    return PangeaResponse(request, "Success", {"status": "ready"}, "ready")


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/log", log_v1, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


@contextlib.asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    log.info("starting", **describe(settings))
    pool = await db.connect_pool(settings.database_url.value, max_size=4)
    try:
        await db.check_schema(pool)
        producer = make_producer(settings.kafka_bootstrap)
        await producer.start()
        try:
            yield {"ingest": IngestState(settings, producer, TokenCache(pool))}
        finally:
            await producer.stop()
    finally:
        await pool.close()


def create_app(settings: Settings) -> Starlette:
    configure_logging(settings.log_level)

    @contextlib.asynccontextmanager
    async def app_lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with lifespan(settings) as state:
            yield state

    return build_app(routes(), app_lifespan, "ingest")
