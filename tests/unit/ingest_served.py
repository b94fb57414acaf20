"""Ingest's routes served in memory for handler tests: a client whose requests reach the real
handlers with a test's own :class:`~ingest.publisher.IngestState` (stand-ins for Kafka and the
token table) as their ``request.state.ingest``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import orjson

from auditlog.core.schema import NO_CUSTOM_SCHEMAS
from auditlog.web.app import build_app
from auditlog.web.ratelimit import Limits
from ingest.app import routes
from ingest.publisher import IngestState
from ingest.settings import Settings


@contextlib.asynccontextmanager
async def served(state: IngestState) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(routes(), None, "ingest")

    async def with_state(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["state"] = {"ingest": state}
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=with_state)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def handler_state(
    tasks: asyncio.TaskGroup,
    producer: object,
    tokens: object,
    *,
    max_in_flight: int,
    limits: Limits,
    kind: type[IngestState] = IngestState,
) -> IngestState:
    """An ingest state for handlers that never reach the database (no request store)."""
    return kind(
        Settings(max_in_flight=max_in_flight),
        producer,  # type: ignore[arg-type]
        tokens,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        tasks,
        NO_CUSTOM_SCHEMAS,
        limits=limits,
    )


def bulk(n: int, message: str = "m") -> bytes:
    """A ``/v2/log`` body of ``n`` events, each of the one ``message``."""
    return orjson.dumps({"events": [{"event": {"message": message}}] * n})
