"""The ASGI application shell shared by ingest, query and ``auditlog serve``.

Every HTTP answer, errors included, is a Pangea JSON envelope, because the official SDK parses
every body it receives; each request gets a ``prq_`` id, one log line and a latency sample.

One layer, :class:`Edge`, does all of that in front of Starlette, and calls the handlers of
exact-path routes (``/v1/log``, ``/v2/log``, ``/v1/search``, ...) and of templated ones
(``/v1/logs/{log}/receipts/{index}``, tiles, ...) itself: Starlette's router and per-request
exception wrappers cost ~30 µs of CPU per request, beside uvicorn's own ~72
(bench/bench_http_floor.py, docs/performance.md). Unknown paths and wrong methods still go
through Starlette, and both ways map exceptions to answers through the one table
:func:`build_app` makes.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from time import perf_counter
from typing import Any, TypeGuard

import asyncpg
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from auditlog.core.errors import Pushback
from auditlog.core.schema import error_item
from auditlog.runtime.observability import RequestLog, metrics_endpoint, worker_stopped
from auditlog.web.limits import BodyLimit, BodyTooLarge
from auditlog.web.pangea import PangeaResponse, new_request_id, now, unavailable, validation_error

log = structlog.get_logger("http")

# The largest body a Pangea request needs is a /v2/log of 1,000 events: 4 MiB keeps events of
# ~4 KiB each, what real audit events stay well under. Services take their own setting.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


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
) -> Edge:
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


Handler = Callable[[Request, Exception], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class Edge:
    """The ASGI layer in front of the application.

    Per HTTP request, outermost first: a ``prq_`` id and arrival time in ``scope["state"]``
    (the Pangea envelope echoes them); the body limit (a body announced too large is refused
    unread, one that grows past it raises :class:`BodyTooLarge` out of ``receive``); the handler,
    directly for an exact-path route of ``direct`` or the first of ``templated`` whose template
    and method match (as Starlette's router would pick it), through ``app`` (Starlette)
    otherwise;
    last, one log line and one latency sample (:class:`RequestLog`). An exception out of a
    direct handler is answered by the first entry of ``handlers`` along its class's MRO (the
    table Starlette uses for the routed ones), else by the 500 handler.
    """

    def __init__(
        self,
        app: Starlette,
        service: str,
        max_body_bytes: int,
        direct: Mapping[tuple[str, str], Route],
        handlers: Mapping[int | type[Exception], Handler],
        templated: Sequence[Route] = (),
    ) -> None:
        self.app = app
        self.limited = BodyLimit(self._dispatch, max_body_bytes, body_too_large)
        self.direct = dict(direct)
        self.templated = list(templated)
        self.handlers = dict(handlers)
        self.request_log = RequestLog(service)

    @property
    def routes(self) -> list[BaseRoute]:
        return self.app.routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        state = scope.setdefault("state", {})
        state["request_id"] = new_request_id()
        state["request_time"] = now()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.limited(scope, receive, send_status)
        finally:
            self.request_log.record(scope, status, perf_counter() - start)

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        """The handler of the request, behind the body limit (``receive`` is bounded)."""
        if scope.get("root_path"):
            route = None  # mounted under a prefix: Starlette's router knows how to strip it
        else:
            route = self.direct.get((scope["method"], scope["path"])) or self._templated(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        request = Request(scope, receive, send)
        endpoint: Endpoint = route.endpoint
        try:
            response = await endpoint(request)
        except Exception as exc:  # noqa: BLE001 - mapped like Starlette's, 500 for the rest
            response = await self._handler(exc)(request, exc)
        await response(scope, receive, send)

    def _templated(self, scope: Any) -> Route | None:
        """The first templated route matching path and method, its path parameters set in
        ``scope``; None leaves the request to Starlette (no match, or the path matched with
        another method: its 405)."""
        for route in self.templated:
            match, child = route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                return route
        return None

    def _handler(self, exc: Exception) -> Handler:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return self.handlers[500]


def _direct_routes(route_list: Sequence[BaseRoute]) -> dict[tuple[str, str], Route]:
    """(method, path) of every route without path parameters whose endpoint is a function.

    Called directly, an exact path wins even over an earlier templated route that would also
    match it, where Starlette would take the first; no route list of the services has such a
    pair (``/v1/logs`` and ``/v1/logs/{log}`` never match the same path)."""
    out: dict[tuple[str, str], Route] = {}
    for route in route_list:
        if not _function_route(route) or route.param_convertors:
            continue
        for method in route.methods or ():
            out.setdefault((method, route.path), route)
    return out


def _templated_routes(route_list: Sequence[BaseRoute]) -> list[Route]:
    """Every route with path parameters whose endpoint is a function, in order, up to the
    first route of another kind (a mount, a class endpoint): past it, Starlette's order could
    give a path to that route first."""
    out: list[Route] = []
    for route in route_list:
        if not _function_route(route):
            break
        if route.param_convertors:
            out.append(route)
    return out


def _function_route(route: BaseRoute) -> TypeGuard[Route]:
    """A route the edge may call itself: its endpoint a function taking a request (Starlette
    treats any other endpoint as an ASGI app of its own)."""
    return isinstance(route, Route) and (
        inspect.isfunction(route.endpoint) or inspect.ismethod(route.endpoint)
    )


def build_app(
    route_list: Sequence[BaseRoute],
    app_lifespan: Any,
    service: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics_route: bool = True,
) -> Edge:
    metrics = [Route("/metrics", metrics_endpoint, methods=["GET"])] if metrics_route else []
    routes = [*route_list, *metrics]
    handlers: dict[int | type[Exception], Handler] = {
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
    }
    app = Starlette(routes=routes, lifespan=app_lifespan, exception_handlers=handlers)
    return Edge(
        app, service, max_body_bytes, _direct_routes(routes), handlers, _templated_routes(routes)
    )
