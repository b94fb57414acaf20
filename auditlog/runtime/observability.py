"""Logging and metrics set-up shared by the three services.

structlog is configured once per process, by the composition root, to write one JSON object per
line to stdout. Prometheus metrics live in the default registry and are exposed on ``/metrics``
(the metrics listener, :mod:`auditlog.runtime.listener`, or the development API port); every
service states what it runs as ``auditlog_build_info``. When a service runs several worker
processes (auditlog/cli/services.py sets ``PROMETHEUS_MULTIPROC_DIR`` for them), each worker
keeps its values in that directory and every exposition (:func:`registry`) adds them up.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import MutableMapping
from importlib import metadata

import orjson
import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from auditlog.runtime.clock import log_timestamp

_configured = False


def configure_logging(level: str = "info") -> None:
    """Route structlog (and the stdlib loggers of our dependencies) to JSON lines on stdout."""
    global _configured  # noqa: PLW0603 - logging is process-global by nature
    if _configured:
        return
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            log_timestamp,  # TimeStamper(fmt="iso", utc=True)'s text, cheaper
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
    # aiokafka and uvicorn log through the stdlib; keep their warnings, drop their chatter.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
    _configured = True


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def registry() -> CollectorRegistry:
    """What to expose: this process's metrics, or every worker process's added up."""
    if MULTIPROC_DIR not in os.environ:
        return REGISTRY
    workers = CollectorRegistry()
    multiprocess.MultiProcessCollector(workers)  # type: ignore[no-untyped-call]
    return workers


def worker_stopped() -> None:
    """Leave the gauges of a stopping worker process out of the sums from now on."""
    if MULTIPROC_DIR in os.environ:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(registry()), media_type=CONTENT_TYPE_LATEST)


Scope = MutableMapping[str, object]

HTTP_REQUESTS = Counter(
    "auditlog_http_requests_total", "HTTP requests answered", ["service", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "auditlog_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


BUILD_INFO = Gauge(
    "auditlog_build_info",
    "Always 1: the service, auditlog version and Python version this process runs",
    ["service", "version", "python"],
    multiprocess_mode="max",  # one series, however many workers set it
)


def package_version() -> str:
    """The installed auditlog distribution's version ("unknown" when run from a bare tree)."""
    try:
        return metadata.version("auditlog")
    except metadata.PackageNotFoundError:
        return "unknown"


def declare_build_info(service: str) -> None:
    """Set ``auditlog_build_info{service,version,python} 1`` for this process's service."""
    BUILD_INFO.labels(service, package_version(), platform.python_version()).set(1)


class RequestLog:
    """One JSON log line and one latency observation per HTTP request (the ASGI edge calls
    :meth:`record` when the request is done)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.log = structlog.get_logger(service)
        # Labelled metric children per (route template, status): resolving labels takes a lock
        # and a tuple per call. Bounded by routes times the statuses the app answers with.
        self._series: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        route_name = getattr(route, "path", None) or "unmatched"
        series = self._series.get((route_name, status))
        if series is None:
            series = self._series[(route_name, status)] = (
                HTTP_REQUESTS.labels(self.service, route_name, str(status)),
                HTTP_LATENCY.labels(self.service, route_name),
            )
        series[0].inc()
        series[1].observe(elapsed)
        state = scope.get("state")
        # The route template, never the path: paths can carry secrets (download capability
        # URLs) and event hashes. Only a path no route matched is logged, cut short.
        path = str(scope.get("path", ""))[:200] if route is None else None
        self.log.info(
            "request",
            method=scope.get("method"),
            path=path,
            route=route_name,
            status=status,
            ms=round(elapsed * 1000, 3),
            request_id=state.get("request_id") if isinstance(state, dict) else None,
        )
