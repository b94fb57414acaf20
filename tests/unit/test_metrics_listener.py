"""The metrics listener: /metrics of the registry it is given, health checks as 200 or 503, on
a port of its own; and the metric names every service exports the same way."""

from __future__ import annotations

import platform
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from starlette.routing import Route

from auditlog.runtime.listener import MetricsListener, Verdict, metrics_listener, serve_metrics
from auditlog.runtime.observability import declare_build_info, package_version
from auditlog.runtime.settings import Env, SettingsError
from auditlog.web.app import build_app
from ingest.app import healthz
from ingest.settings import Settings as IngestSettings
from query.settings import Settings as QuerySettings
from sealer.settings import Settings as SealerSettings


def _get(listener: MetricsListener, path: str) -> tuple[int, str, str]:
    url = f"http://127.0.0.1:{listener.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def listener() -> Iterator[MetricsListener]:
    registry = CollectorRegistry()
    Counter("listener_test_things_total", "Things", registry=registry).inc(3)
    state = {"ready": False}

    def ready() -> Verdict:
        return Verdict(state["ready"], "ready" if state["ready"] else "owns no partition")

    def broken() -> Verdict:
        raise RuntimeError("the check itself failed")

    running = serve_metrics(
        "127.0.0.1",
        0,
        registry,
        checks={"/readyz": ready, "/broken": broken, "/healthz": lambda: Verdict(True, "alive")},
    )
    running.state = state  # type: ignore[attr-defined]
    yield running
    running.close()


def test_metrics_of_the_given_registry_on_a_port_of_its_own(listener: MetricsListener) -> None:
    status, ctype, body = _get(listener, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert "listener_test_things_total 3.0" in body
    assert "auditlog_http_requests_total" not in body  # only the registry it was given
    assert _get(listener, "/metrics?x=1")[0] == 200


def test_checks_answer_200_or_503_with_their_reason(listener: MetricsListener) -> None:
    assert _get(listener, "/healthz")[::2] == (200, "alive\n")
    assert _get(listener, "/readyz")[::2] == (503, "owns no partition\n")
    listener.state["ready"] = True  # type: ignore[attr-defined]
    assert _get(listener, "/readyz")[::2] == (200, "ready\n")
    status, _, body = _get(listener, "/broken")
    assert status == 503 and "RuntimeError: the check itself failed" in body
    assert _get(listener, "/nothing")[0] == 404


def test_a_taken_port_is_an_oserror(listener: MetricsListener) -> None:
    with pytest.raises(OSError, match="in use"):
        serve_metrics("127.0.0.1", listener.port)


def test_port_zero_in_settings_means_no_listener() -> None:
    with metrics_listener("127.0.0.1", 0) as none:
        assert none is None
    with metrics_listener("127.0.0.1", 0, CollectorRegistry()) as none:
        assert none is None


def test_the_with_block_closes_the_listener() -> None:
    with metrics_listener("127.0.0.1", _free_port()) as running:
        assert running is not None
        port = running.port
        assert _get(running, "/metrics")[0] == 200
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_build_info_names_service_version_and_python() -> None:
    declare_build_info("unit-test")
    labels = {
        "service": "unit-test",
        "version": package_version(),
        "python": platform.python_version(),
    }
    assert REGISTRY.get_sample_value("auditlog_build_info", labels) == 1.0
    assert package_version() != "unknown"  # the project is installed (editable) in the venv


async def test_the_api_port_serves_metrics_only_without_a_listener() -> None:
    routes = [Route("/healthz", healthz, methods=["GET"])]
    for metrics_route, expected in ((True, 200), (False, 404)):
        app = build_app(routes, None, "ingest", metrics_route=metrics_route)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await http.get("/healthz")
            metrics = await http.get("/metrics")
        assert metrics.status_code == expected
    # The one app with /metrics saw a request: the renamed histogram carries it.
    body = metrics_text()
    assert 'auditlog_http_request_duration_seconds_count{route="/healthz",service="ingest"}' in body
    assert "auditlog_http_request_seconds" not in body


def metrics_text() -> str:
    return generate_latest(REGISTRY).decode()


def test_metrics_listener_settings() -> None:
    env = {
        "AUDITLOG_INGEST_METRICS_HOST": "0.0.0.0",
        "AUDITLOG_INGEST_METRICS_PORT": "9100",
        "AUDITLOG_QUERY_METRICS_HOST": "::",
        "AUDITLOG_QUERY_METRICS_PORT": "9101",
        "AUDITLOG_SEALER_METRICS_HOST": "10.0.0.7",
        "AUDITLOG_SEALER_METRICS_PORT": "9102",
        "AUDITLOG_SEALER_READY_MAX_SEAL_AGE": "15",
    }
    ingest, query, sealer = (
        IngestSettings.from_env(env),
        QuerySettings.from_env(env),
        SealerSettings.from_env(env),
    )
    assert (ingest.metrics_host, ingest.metrics_port) == ("0.0.0.0", 9100)
    assert (query.metrics_host, query.metrics_port) == ("::", 9101)
    assert (sealer.metrics_host, sealer.metrics_port) == ("10.0.0.7", 9102)
    assert sealer.ready_max_seal_age == 15.0
    ingest, query, sealer = (
        IngestSettings.from_env({}),
        QuerySettings.from_env({}),
        SealerSettings.from_env({}),
    )
    listeners = [(s.metrics_host, s.metrics_port) for s in (ingest, query, sealer)]
    assert listeners == [("127.0.0.1", 0)] * 3
    with pytest.raises(SettingsError, match="AUDITLOG_SEALER_METRICS_PORT must be a port"):
        SealerSettings.from_env({"AUDITLOG_SEALER_METRICS_PORT": "91000"})
    with pytest.raises(SettingsError, match="AUDITLOG_INGEST_METRICS_PORT must be >= 0"):
        IngestSettings.from_env({"AUDITLOG_INGEST_METRICS_PORT": "-1"})
    with pytest.raises(SettingsError, match="READY_MAX_SEAL_AGE must be >= 1"):
        SealerSettings.from_env({"AUDITLOG_SEALER_READY_MAX_SEAL_AGE": "0.5"})
    assert Env({"AUDITLOG_X": "65535"}).port("X", 0) == 65535


def test_ipv6_listener() -> None:
    try:
        running = serve_metrics("::1", 0, CollectorRegistry())
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        with urllib.request.urlopen(f"http://[::1]:{running.port}/metrics", timeout=5) as resp:
            assert resp.status == 200
    finally:
        running.close()
