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
from typing import Any

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auditlog.core.client_signature import verify_event_signature
from auditlog.core.columns import TEXT_COLUMNS
from auditlog.core.envelope import Envelope, canonical_json
from auditlog.core.errors import InvalidEvent, Pushback
from auditlog.core.schema import (
    Schema,
    error_item,
    validate_event,
    validate_signature_fields,
)
from auditlog.kafka.clients import PRINCIPAL_HEADER
from auditlog.pg import db
from auditlog.pg.tokens import TokenCache, TokenInfo
from auditlog.runtime.clock import iso_us
from auditlog.runtime.observability import configure_logging, declare_build_info
from auditlog.runtime.settings import describe, load_schemas
from auditlog.web import requests_store
from auditlog.web.app import Edge, service_app
from auditlog.web.pangea import (
    PangeaResponse,
    authorize,
    bearer_token,
    parse_json_object,
    success,
    throttle,
    unauthorized,
    unavailable,
    validation_error,
)
from auditlog.web.ratelimit import Limits
from ingest.publisher import Headers, InFlightFull, IngestState, kafka_producer
from ingest.settings import Settings

log = structlog.get_logger("ingest")

REJECTED = Counter("auditlog_ingest_rejected_total", "Requests rejected", ["reason"])


def _state(request: Request) -> IngestState:
    state: IngestState = request.state.ingest
    return state


def _schema(request: Request, body: dict[str, Any], errors: list[dict[str, str]]) -> Schema | None:
    """The schema of the request's ``config_id`` (standard without one)."""
    config_id = body.get("config_id")
    if config_id is not None and not isinstance(config_id, str):
        errors.append(error_item("InvalidString", "'/config_id' must be a string", "/config_id"))
        return None
    schema = _state(request).schemas.for_config(config_id)
    if schema is None:
        errors.append(
            error_item(
                "UnknownConfigID", f"no audit schema for config_id {config_id!r}", "/config_id"
            )
        )
    return schema


def _unstorable(event: object, pointer: str) -> list[dict[str, str]]:
    """U+0000 in a searchable text field: PostgreSQL's text cannot hold it, so the sealer would
    dead-letter the event after we acknowledged it. Refused here instead."""
    if not isinstance(event, dict):
        return []
    return [
        error_item("InvalidString", f"'{pointer}/{name}' contains U+0000", f"{pointer}/{name}")
        for _, name in TEXT_COLUMNS
        if isinstance(event.get(name), str) and "\x00" in event[name]
    ]


def _build_envelope(
    item: dict[str, Any], token: TokenInfo, pointer: str, received_at: str, schema: Schema
) -> tuple[Envelope | None, list[dict[str, str]]]:
    event = item.get("event")
    errors = validate_event(event, f"{pointer}/event", schema)
    errors += validate_signature_fields(item, pointer)
    errors += _unstorable(event, f"{pointer}/event")
    if errors:
        return None, errors
    assert isinstance(event, dict)
    signature, public_key = item.get("signature"), item.get("public_key")
    if isinstance(signature, str) and isinstance(public_key, str):
        try:
            verify_event_signature(event, signature, public_key)
        except InvalidEvent as exc:
            return None, [error_item("InvalidSignature", str(exc), f"{pointer}/signature")]
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


MAX_BULK = 1000
MAX_IDEMPOTENCY_KEY = 256
MAX_CONFIG_ID = 64


def _headers(
    token: TokenInfo,
    idempotency_key: object,
    config_id: object,
    pointer: str,
    errors: list[dict[str, str]],
) -> Headers:
    """Kafka headers for one event: the retry key (the sealer seals one event per key) with its
    principal, this token: keys are namespaced per token and tenant (docs/ingest.md)."""
    headers: Headers = []
    if idempotency_key is not None:
        headers.append((PRINCIPAL_HEADER, f"token:{token.token_id}".encode()))
    for name, value, limit, source in (
        ("idempotency-key", idempotency_key, MAX_IDEMPOTENCY_KEY, f"{pointer}/idempotency_key"),
        ("config-id", config_id, MAX_CONFIG_ID, "/config_id"),
    ):
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > limit:
            errors.append(
                error_item("InvalidString", f"'{source}' must be 1 to {limit} characters", source)
            )
            continue
        headers.append((name, value.encode()))
    return headers


def _verbose(body: dict[str, Any], errors: list[dict[str, str]]) -> bool:
    verbose = body.get("verbose", False)
    if not isinstance(verbose, bool):
        errors.append(error_item("InvalidBoolean", "'/verbose' must be a boolean", "/verbose"))
        return False
    return verbose


def _result(envelope: Envelope, verbose: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"hash": envelope.event_hash.hex()}
    if verbose:
        result["envelope"] = envelope.to_dict()
    return result


async def _prelude(
    request: Request, items: str | None = None
) -> tuple[TokenInfo, dict[str, Any]] | Response:
    """Authorize (log scope), rate-limit, parse, check the in-flight bound: the grant and body,
    or the response to send instead. Both count events: one per entry of the body's ``items``
    (valid or not), else one. A token past its limit, or a full worker, is refused before the
    body is read; an unknown token never reaches the limits; a refusal is charged nothing."""
    state = _state(request)
    token = await authorize(request, state.tokens, "log")
    if token is None:
        REJECTED.labels("unauthorized").inc()
        return unauthorized(request)
    refused = throttle(request, state.limits, token, 1, charge=False)
    if refused is None:
        if not state.admits(1):
            return _pushed_back(request, InFlightFull.__name__)
        body, errors = parse_json_object(await request.body())
        if body is None:
            REJECTED.labels("validation").inc()
            return validation_error(request, errors)
        listed = body.get(items) if items else None
        cost = len(listed) if isinstance(listed, list) and listed else 1
        if cost <= MAX_BULK and not state.admits(cost):  # (too many: validation says so)
            return _pushed_back(request, InFlightFull.__name__)
        refused = throttle(request, state.limits, token, cost)
        if refused is None:
            return token, body
    REJECTED.labels("rate_limited").inc()
    return refused


def _pushed_back(request: Request, reason: str) -> Response:
    REJECTED.labels(reason).inc()
    return unavailable(request, "Service temporarily unavailable, retry later")


async def _publish_or_503(
    request: Request, envelopes: list[Envelope], headers: list[Headers]
) -> Response | None:
    state = _state(request)
    try:
        # One Kafka record per event, keyed by tenant; acks are awaited together.
        await state.publish_many(envelopes, headers)
    except Pushback as exc:
        log.warning("pushback", reason=str(exc))
        return _pushed_back(request, type(exc).__name__)
    return None


async def log_v1(request: Request) -> Response:
    granted = await _prelude(request)
    if isinstance(granted, Response):
        return granted
    token, body = granted
    errors: list[dict[str, str]] = []
    verbose = _verbose(body, errors)
    received_at = iso_us()
    schema = _schema(request, body, errors)
    if schema is None:
        return validation_error(request, errors)
    envelope, item_errors = _build_envelope(body, token, "", received_at, schema)
    errors += item_errors
    headers = _headers(
        token, request.headers.get("idempotency-key"), body.get("config_id"), "/headers", errors
    )
    if errors or envelope is None:
        REJECTED.labels("validation").inc()
        return validation_error(request, errors)
    failed = await _publish_or_503(request, [envelope], [headers])
    return failed or success(request, _result(envelope, verbose))


def _bulk_envelopes(
    request: Request, body: dict[str, Any], token: TokenInfo
) -> tuple[list[Envelope], list[Headers], bool, list[dict[str, str]]]:
    errors: list[dict[str, str]] = []
    verbose = _verbose(body, errors)
    schema = _schema(request, body, errors)
    if schema is None:
        return [], [], verbose, errors
    events = body.get("events")
    if not isinstance(events, list) or not events:
        errors.append(
            error_item("BelowMinItems", "'/events' must hold 1 to 1000 events", "/events")
        )
        return [], [], verbose, errors
    if len(events) > MAX_BULK:
        errors.append(
            error_item(
                "AboveMaxItems",
                f"'/events' holds {len(events)} events, the limit is {MAX_BULK}",
                "/events",
            )
        )
        return [], [], verbose, errors
    received_at = iso_us()
    envelopes: list[Envelope] = []
    headers: list[Headers] = []
    for i, item in enumerate(events):
        if not isinstance(item, dict):
            errors.append(
                error_item("InvalidObject", f"'/events/{i}' must be an object", f"/events/{i}")
            )
            continue
        envelope, item_errors = _build_envelope(item, token, f"/events/{i}", received_at, schema)
        errors += item_errors
        item_headers = _headers(
            token, item.get("idempotency_key"), body.get("config_id"), f"/events/{i}", errors
        )
        if envelope is not None:
            envelopes.append(envelope)
            headers.append(item_headers)
    return envelopes, headers, verbose, errors


@dataclass(frozen=True, slots=True)
class _Bulk:
    token: TokenInfo
    envelopes: list[Envelope]
    headers: list[Headers]
    verbose: bool


async def _bulk_prelude(request: Request) -> _Bulk | Response:
    """Authorize, parse and validate a bulk request; or the response to send instead."""
    granted = await _prelude(request, "events")
    if isinstance(granted, Response):
        return granted
    token, body = granted
    envelopes, headers, verbose, errors = _bulk_envelopes(request, body, token)
    if errors:
        REJECTED.labels("validation").inc()
        return validation_error(request, errors)
    return _Bulk(token, envelopes, headers, verbose)


async def log_v2(request: Request) -> Response:
    bulk = await _bulk_prelude(request)
    if isinstance(bulk, Response):
        return bulk
    envelopes, headers, verbose = bulk.envelopes, bulk.headers, bulk.verbose
    failed = await _publish_or_503(request, envelopes, headers)
    return failed or success(request, {"results": [_result(e, verbose) for e in envelopes]})


async def log_v2_async(request: Request) -> Response:
    """Validate now, answer 202, publish in the background; ``GET /request/{id}`` tells when."""
    bulk = await _bulk_prelude(request)
    if isinstance(bulk, Response):
        return bulk
    token, envelopes, headers, verbose = bulk.token, bulk.envelopes, bulk.headers, bulk.verbose
    request_id: str = request.state.request_id
    results = {"results": [_result(e, verbose) for e in envelopes]}
    try:
        await _state(request).start_async(request_id, token.token_id, envelopes, headers, results)
    except InFlightFull:
        return _pushed_back(request, InFlightFull.__name__)
    return requests_store.accepted(request, request_id)


async def request_status(request: Request) -> Response:
    token = bearer_token(request)
    info = await _state(request).tokens.resolve(token) if token else None
    if info is None:
        return unauthorized(request)
    refused = throttle(request, _state(request).limits, info, 1)
    if refused is not None:
        return refused
    return await requests_store.answer(
        request, _state(request).pool, info, request.path_params["request_id"]
    )


def _auth0_event(log_entry: dict[str, Any]) -> dict[str, str]:
    """Auth0 log-stream entry to a standard-schema event (mapping in docs/ingest.md)."""
    data = log_entry.get("data") if isinstance(log_entry.get("data"), dict) else {}
    assert isinstance(data, dict)

    def text(*keys: str) -> str | None:
        for key in keys:
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    event: dict[str, str] = {
        "message": text("description", "type") or "auth0 event",
        "new": canonical_json(data).decode()[:32766],
    }
    for field, keys, limit in (
        ("actor", ("user_name", "user_id"), 128),
        ("action", ("type",), 32),
        ("source", ("ip",), 128),
        ("target", ("client_name", "client_id"), 128),
        ("timestamp", ("date",), 128),
        ("tenant_id", ("tenant_name",), 128),
    ):
        value = text(*keys)
        if value is not None:
            event[field] = value[:limit]
    log_id = log_entry.get("log_id")
    if isinstance(log_id, str):
        event["old"] = f"auth0 log_id {log_id}"[:32766]
    return event


async def log_stream(request: Request) -> Response:
    granted = await _prelude(request, "logs")
    if isinstance(granted, Response):
        return granted
    token, body = granted
    logs = body.get("logs")
    if not isinstance(logs, list) or not logs or len(logs) > MAX_BULK:
        return validation_error(
            request,
            [error_item("InvalidLogs", "'/logs' must hold 1 to 1000 log-stream entries", "/logs")],
        )
    try:
        items = [{"event": _auth0_event(e)} for e in logs if isinstance(e, dict)]
    except InvalidEvent as exc:  # an entry's data that cannot be canonical JSON (too deep)
        return validation_error(request, [error_item("InvalidEvent", str(exc), "/logs")])
    if len(items) != len(logs):
        return validation_error(
            request,
            [error_item("InvalidObject", "every entry of '/logs' must be an object", "/logs")],
        )
    envelopes, headers, _, errors = _bulk_envelopes(request, {"events": items}, token)
    if errors:
        return validation_error(request, errors)
    failed = await _publish_or_503(request, envelopes, headers)
    return failed or success(request, {})


async def healthz(request: Request) -> Response:
    return PangeaResponse(request, "Success", {"status": "ok"}, "alive")


async def readyz(request: Request) -> Response:
    """Ready when both what every request needs answer within 2 s: Kafka (the events go
    there) and PostgreSQL (every token is looked up there)."""
    ingest = _state(request)

    async def kafka() -> str | None:
        try:
            async with asyncio.timeout(2):
                await ingest.producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError):
            return "Kafka is not reachable"
        return None

    async def postgres() -> str | None:
        try:
            async with asyncio.timeout(2):
                await ingest.pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return "PostgreSQL is not reachable"
        return None

    failures = [f for f in await asyncio.gather(kafka(), postgres()) if f is not None]
    if failures:
        return unavailable(request, "; ".join(failures))
    return PangeaResponse(request, "Success", {"status": "ready"}, "ready")


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/log", log_v1, methods=["POST"]),
        Route("/v2/log", log_v2, methods=["POST"]),
        Route("/v2/log_async", log_v2_async, methods=["POST"]),
        Route("/v1/log_stream", log_stream, methods=["POST"]),
        Route("/request/{request_id}", request_status, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


@contextlib.asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    log.info("starting", **describe(settings))
    schemas = load_schemas(settings.schemas_file)
    # Token lookups and the request store are point reads and writes: a statement past 2 s
    # means the database is in trouble, and the token cache's grace window covers known tokens.
    pool = await db.connect_pool(settings.database_url.value, max_size=4, statement_timeout=2.0)
    try:
        await db.check_schema(pool)
        producer = kafka_producer(settings)
        await producer.start()
        try:
            # Background log_async publishes live in this group: shutdown waits for them
            # before the producer stops.
            async with asyncio.TaskGroup() as tasks:
                state = IngestState(
                    settings,
                    producer,
                    TokenCache(pool),
                    pool,
                    tasks,
                    schemas,
                    limits=Limits.of(settings.rate_limits),
                )
                yield {"ingest": state}
        finally:
            await producer.stop()
    finally:
        await pool.close()


def create_app(settings: Settings) -> Edge:
    configure_logging(settings.log_level)
    declare_build_info("ingest")
    return service_app(
        routes(),
        lambda: lifespan(settings),
        "ingest",
        max_body_bytes=settings.max_body_bytes,
        metrics_route=not settings.metrics_port,
    )
