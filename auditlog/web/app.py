"""The ASGI application shell shared by ingest, query and ``auditlog serve``.

Every HTTP answer, errors included, is a Pangea JSON envelope, because the official SDK parses
every body it receives; each request gets a ``prq_`` id, one log line and a latency sample.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auditlog.core.errors import Pushback
from auditlog.core.schema import error_item
from auditlog.runtime.observability import RequestLogMiddleware, metrics_endpoint, worker_stopped
from auditlog.web.limits import BodyLimit, BodyTooLarge
from auditlog.web.pangea import PangeaResponse, new_request_id, unavailable, validation_error

log = structlog.get_logger("http")

# The largest body a Pangea request needs is a /v2/log of 1,000 events: 4 MiB keeps events of
# ~4 KiB each, what real audit events stay well under. Services take their own setting.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class RequestIdMiddleware:
    """Stamps each request with a Pangea ``prq_`` id and its arrival time."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})
            scope["state"]["request_id"] = new_request_id()
            scope["state"]["request_time"] = (
                datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            )
        await self.app(scope, receive, send)


async def _not_found(request: Request, _: Exception) -> Response:
    return PangeaResponse(request, "NotFound", None, f"{request.url.path} not found")


async def _method_not_allowed(request: Request, _: Exception) -> Response:
    return PangeaResponse(request, "NotFound", None, f"{request.method} not allowed here")


async def _unavailable(request: Request, exc: Exception) -> Response:
    # A dependency is down or overloaded: the client should retry, and must not think the
    # request was wrong. The one mapping of Pushback (and lost databases) to HTTP.
    log.warning("unavailable", path=request.url.path, error=type(exc).__name__)
    return unavailable(request, "Service temporarily unavailable, retry later")


def body_too_large(request: Request, limit: int) -> Response:
    """Pangea's ValidationError for a body past the limit, as HTTP 413."""
    response = validation_error(
        request, [error_item("AboveMaxLength", f"request body exceeds {limit} bytes", "/")]
    )
    response.status_code = 413
    return response


async def _body_too_large(request: Request, exc: Exception) -> Response:
    limit = exc.limit if isinstance(exc, BodyTooLarge) else 0
    return body_too_large(request, limit)


async def _too_slow(request: Request, exc: Exception) -> Response:
    # PostgreSQL cancelled a statement past the service's statement timeout (or an operator
    # cancelled it): not the client's mistake, and a retry may well succeed.
    log.warning("statement_cancelled", path=request.url.path, error=type(exc).__name__)
    return unavailable(
        request, "The query ran past its time limit; narrow it (time range, fields) or retry"
    )


async def _bad_value(request: Request, exc: Exception) -> Response:
    # PostgreSQL's class 22 (a value out of range, malformed for its type): the request carried
    # it, so retrying cannot help. The edges validate what they take; this is the net under them.
    log.warning("bad_value", path=request.url.path, error=type(exc).__name__)
    return validation_error(
        request, [error_item("InvalidValue", "a value in the request is out of range", "/")]
    )


async def _internal(request: Request, exc: Exception) -> Response:
    log.error("unhandled", path=request.url.path, exc_info=exc)
    return PangeaResponse(request, "InternalError", None, "Internal error")


def service_app(
    route_list: Sequence[BaseRoute],
    resources: Callable[[], AbstractAsyncContextManager[dict[str, Any]]],
    service: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics_route: bool = True,
) -> Starlette:
    """An app whose lifespan opens ``resources()`` and hands its state to the handlers;
    ``metrics_route``: ``/metrics`` on the app's own port (off where a metrics listener runs)."""

    @contextlib.asynccontextmanager
    async def app_lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        try:
            async with resources() as state:
                yield state
        finally:
            worker_stopped()

    return build_app(
        route_list,
        app_lifespan,
        service,
        max_body_bytes=max_body_bytes,
        metrics_route=metrics_route,
    )


def build_app(
    route_list: Sequence[BaseRoute],
    app_lifespan: Any,
    service: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics_route: bool = True,
) -> Starlette:
    metrics = [Route("/metrics", metrics_endpoint, methods=["GET"])] if metrics_route else []
    # Middleware runs outermost first: the request id exists before the body limit answers.
    return Starlette(
        routes=[*route_list, *metrics],
        lifespan=app_lifespan,
        middleware=[
            Middleware(RequestLogMiddleware, service=service),
            Middleware(RequestIdMiddleware),
            Middleware(BodyLimit, max_bytes=max_body_bytes, too_large=body_too_large),
        ],
        exception_handlers={
            404: _not_found,
            405: _method_not_allowed,
            500: _internal,
            BodyTooLarge: _body_too_large,
            Pushback: _unavailable,
            asyncpg.DataError: _bad_value,
            asyncpg.QueryCanceledError: _too_slow,
            asyncpg.PostgresConnectionError: _unavailable,
            asyncpg.CannotConnectNowError: _unavailable,
            asyncpg.InterfaceError: _unavailable,
            OSError: _unavailable,
        },
    )
