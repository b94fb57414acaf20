"""The service commands: ingest, query, sealer, and serve (ingest and query on one port).

The services are imported inside each command, never at module level: only ``auditlog/cli``
may import them, and ``auditlog --help`` should not pay for their start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from auditlog.cli.args import EXIT_OK, EXIT_USAGE, Subparsers

UVICORN_MAX_CONCURRENCY = 4096


def run_uvicorn(app: Any, host: str, port: int) -> int:
    """Serve ``app`` until stopped; every HTTP command (and the witness) runs this way."""
    import uvicorn

    uvicorn.run(
        app,
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
    )
    return EXIT_OK


def cmd_ingest(_: argparse.Namespace) -> int:
    from auditlog.runtime.listener import metrics_listener
    from ingest.app import create_app
    from ingest.settings import Settings

    settings = Settings.from_env()
    with metrics_listener(settings.metrics_host, settings.metrics_port):
        return run_uvicorn(create_app(settings), settings.host, settings.port)


def cmd_query(_: argparse.Namespace) -> int:
    from auditlog.runtime.listener import metrics_listener
    from query.app import create_app
    from query.settings import Settings

    settings = Settings.from_env()
    with metrics_listener(settings.metrics_host, settings.metrics_port):
        return run_uvicorn(create_app(settings), settings.host, settings.port)


def cmd_serve(_: argparse.Namespace) -> int:
    """Ingest and query on one port: the Pangea SDK needs a single base URL."""
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
    app = service_app([*ingest_routes, *query_routes], resources, "serve", max_body_bytes=limit)
    return run_uvicorn(app, ingest_settings.host, ingest_settings.port)


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
