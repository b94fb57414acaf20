"""The service commands: ingest, query, sealer, and serve (ingest and query on one port).

The services are imported inside each command, never at module level: only ``auditlog/cli``
may import them, and ``auditlog --help`` should not pay for their start-up.

ingest, query and serve run ``AUDITLOG_INGEST_WORKERS`` / ``AUDITLOG_QUERY_WORKERS`` worker
processes (default: one per CPU, at most 8) on one listening socket, which uvicorn's supervisor
binds, hands to each worker and restarts them should one die. Workers share nothing: each builds
its app from the environment (:func:`ingest_app`, :func:`query_app`, :func:`serve_app`, run as
uvicorn factories in the workers), with its own pools and producer. Their metrics meet in a
``PROMETHEUS_MULTIPROC_DIR`` made here for the run (auditlog/runtime/observability.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from typing import Any

from auditlog.cli.args import EXIT_OK, EXIT_USAGE, Subparsers

UVICORN_MAX_CONCURRENCY = 4096


def run_uvicorn(
    app: Any, host: str, port: int, workers: int = 1, metrics: tuple[str, int] = ("", 0)
) -> int:
    """Serve ``app`` until stopped; every HTTP command (and the witness) runs this way.

    ``app`` is an ASGI app, or the ``module:function`` of a factory that makes one, which
    ``workers`` processes then call each for itself. ``metrics`` (host, port; port 0: none) is
    the metrics listener (auditlog/runtime/listener.py), served by this process: with several
    workers, their metrics added up.
    """
    from auditlog.runtime.listener import metrics_listener
    from auditlog.runtime.observability import MULTIPROC_DIR, registry

    with contextlib.ExitStack() as stack:
        if workers > 1:
            # The workers' metric files: fresh for each run, or dead workers' counters would
            # count. Set before the workers start: they read it when they import the metrics.
            metrics_dir = tempfile.mkdtemp(prefix="auditlog-metrics-")
            stack.callback(shutil.rmtree, metrics_dir, ignore_errors=True)
            os.environ[MULTIPROC_DIR] = metrics_dir
        stack.enter_context(metrics_listener(*metrics, registry()))
        return _uvicorn(app, host, port, workers)


def _uvicorn(app: Any, host: str, port: int, workers: int) -> int:
    import uvicorn

    uvicorn.run(
        app,
        factory=isinstance(app, str),
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop="auto",
        lifespan="on",
        timeout_graceful_shutdown=10,
        # Last-resort bounds under the services' own (body limits, in-flight slots, timeouts):
        # past this many open connections and tasks uvicorn answers 503 itself, and an idle
        # keep-alive connection is closed after 5 s, so idle or slow clients cannot hold
        # every file descriptor.
        limit_concurrency=UVICORN_MAX_CONCURRENCY,
        timeout_keep_alive=5,
        backlog=2048,
        # Nothing reads the client's address or scheme (limits go by token), so the rewriting
        # of X-Forwarded-* headers is a cost per request with no use.
        proxy_headers=False,
    )
    return EXIT_OK


def ingest_app() -> Any:
    """The ingest app, as each worker process makes it (a uvicorn factory)."""
    from ingest.app import create_app
    from ingest.settings import Settings

    return create_app(Settings.from_env())


def query_app() -> Any:
    """The query app, as each worker process makes it (a uvicorn factory)."""
    from query.app import create_app
    from query.settings import Settings

    return create_app(Settings.from_env())


def cmd_ingest(_: argparse.Namespace) -> int:
    from ingest.settings import Settings

    s = Settings.from_env()
    metrics = (s.metrics_host, s.metrics_port)
    return run_uvicorn(f"{__name__}:ingest_app", s.host, s.port, s.workers, metrics)


def cmd_query(_: argparse.Namespace) -> int:
    from query.settings import Settings

    s = Settings.from_env()
    metrics = (s.metrics_host, s.metrics_port)
    return run_uvicorn(f"{__name__}:query_app", s.host, s.port, s.workers, metrics)


def cmd_serve(_: argparse.Namespace) -> int:
    """Ingest and query on one port: the Pangea SDK needs a single base URL."""
    from ingest.settings import Settings

    settings = Settings.from_env()
    return run_uvicorn(f"{__name__}:serve_app", settings.host, settings.port, settings.workers)


def serve_app() -> Any:
    """Ingest's and query's routes in one app, as each worker process makes it."""
    from auditlog.runtime.observability import configure_logging, declare_build_info
    from auditlog.web.app import service_app
    from ingest import app as ingest_app
    from ingest.settings import Settings as IngestSettings
    from query import app as query_app
    from query.settings import Settings as QuerySettings

    ingest_settings = IngestSettings.from_env()
    query_settings = QuerySettings.from_env()
    configure_logging(ingest_settings.log_level)
    declare_build_info("serve")

    @contextlib.asynccontextmanager
    async def resources() -> Any:
        async with (
            ingest_app.lifespan(ingest_settings) as ingest_state,
            query_app.lifespan(query_settings) as query_state,
        ):
            yield {**ingest_state, **query_state}

    # Both services answer /request/{id}, /healthz and /readyz when run alone; here ingest's
    # routes win (the async-request table is shared, so either answers a poll the same way).
    ingest_routes = ingest_app.routes()
    taken = {getattr(r, "path", None) for r in ingest_routes}
    query_routes = [r for r in query_app.routes() if getattr(r, "path", None) not in taken]
    # One body limit for both: the larger, so serve refuses nothing either service alone takes.
    limit = max(ingest_settings.max_body_bytes, query_settings.max_body_bytes)
    return service_app([*ingest_routes, *query_routes], resources, "serve", max_body_bytes=limit)


def cmd_sealer(_: argparse.Namespace) -> int:
    from auditlog.core.errors import AuditLogError
    from auditlog.runtime.settings import SettingsError
    from sealer.main import main

    try:
        main()
    except (OSError, SettingsError, AuditLogError) as exc:
        # Start-up problems (a missing key file, a bad setting, an unreachable database) are
        # the operator's to fix: say which, without a traceback.
        print(f"auditlog sealer: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def register(sub: Subparsers[argparse.ArgumentParser]) -> None:
    for name, func, text in (
        ("ingest", cmd_ingest, "run the ingest service"),
        ("sealer", cmd_sealer, "run a sealer worker"),
        ("query", cmd_query, "run the query service"),
        ("serve", cmd_serve, "run ingest and query on one port (development)"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)
