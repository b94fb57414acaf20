"""The metrics listener: ``/metrics``, and a service's ``/healthz`` and ``/readyz``, on a port of
their own.

It runs in a thread of its own, outside the service's event loop and outside its public API: a
scrape or a probe never waits behind requests or seals, the API port never exposes metrics,
and a process whose event loop is stuck still answers, so its health check can say so (the
check reads what the loop last published; it never calls into the loop). A parent process that
runs no event loop (several HTTP workers on one port) can serve its workers' metrics the same
way, from the registry it passes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = structlog.get_logger("metrics")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A health or readiness answer: 200 when ``ok``, 503 otherwise; ``reason`` is the body."""

    ok: bool
    reason: str


Check = Callable[[], Verdict]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: CollectorRegistry
    checks: Mapping[str, Check]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encode, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._answer(200, encode(self.server.registry), content_type)
            return
        check = self.server.checks.get(path)
        if check is None:
            self._answer(404, b"not found\n", "text/plain; charset=utf-8")
            return
        try:
            verdict = check()
        except Exception as exc:  # noqa: BLE001 - a failing check is an unhealthy answer
            verdict = Verdict(False, f"check failed: {type(exc).__name__}: {exc}")
        status = 200 if verdict.ok else 503
        self._answer(status, verdict.reason.encode() + b"\n", "text/plain; charset=utf-8")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        # Scrapes and probes come every few seconds: not worth a log line each.
        return


class MetricsListener:
    """A running metrics listener; :attr:`port` is the bound port (useful with port 0)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="metrics-listener", daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    host: str,
    port: int,
    registry: CollectorRegistry = REGISTRY,
    *,
    checks: Mapping[str, Check] | None = None,
) -> MetricsListener:
    """Serve ``registry`` on ``http://host:port/metrics`` and each of ``checks`` (a path such
    as ``/readyz`` to its check) until :meth:`MetricsListener.close`.

    Raises :class:`OSError` when the address cannot be bound (in use, not local, privileged).
    """
    server = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    server.registry = registry
    server.checks = dict(checks or {})
    listener = MetricsListener(server)
    log.info(
        "metrics_listening", host=listener.host, port=listener.port, checks=sorted(checks or {})
    )
    return listener


@contextlib.contextmanager
def metrics_listener(
    host: str, port: int, registry: CollectorRegistry = REGISTRY
) -> Iterator[MetricsListener | None]:
    """:func:`serve_metrics` for the duration of a ``with`` block; nothing when ``port`` is 0."""
    if not port:
        yield None
        return
    listener = serve_metrics(host, port, registry)
    try:
        yield listener
    finally:
        listener.close()
