"""The HTTP shell: every answer is a Pangea envelope, and outages are 503s, not 500s.

The edge calls the handlers of exact-path and templated routes itself, and leaves the rest to
Starlette's router (auditlog/web/app.py); every behaviour here is checked all three ways."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import structlog.testing
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auditlog.core.errors import Pushback
from auditlog.web.app import build_app
from auditlog.web.pangea import new_request_id

FAILURES: dict[str, Exception] = {
    "pushback": Pushback("too many in flight"),
    "refused": ConnectionRefusedError("database down"),
    "pg": asyncpg.CannotConnectNowError("the database system is starting up"),
    "bug": RuntimeError("a bug"),
    "value": asyncpg.DataError("value out of int64 range"),
    "slow": asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
}


async def fail(request: Request) -> Response:
    raise FAILURES[request.path_params["kind"]]


def failing(kind: str) -> Route:
    """An exact-path route (``/direct-<kind>``) that raises like ``/fail/<kind>``."""

    async def endpoint(_: Request) -> Response:
        raise FAILURES[kind]

    return Route(f"/direct-{kind}", endpoint)


class RoutedFail:
    """An ASGI app rather than a function: Starlette routes to it, the edge does not."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raise FAILURES[scope["path_params"]["kind"]]


def client() -> httpx.AsyncClient:
    app = build_app(
        [
            Route("/fail/{kind}", fail),
            *map(failing, FAILURES),
            Route("/routed/{kind}", RoutedFail(), methods=["GET"]),
        ],
        None,
        "test",
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


# Each path shape: a templated and an exact-path route called by the edge, and a route left to
# Starlette's router.
WAYS = pytest.mark.parametrize("way", ["/fail/", "/direct-", "/routed/"])


def test_function_routes_are_called_directly_up_to_the_first_of_another_kind() -> None:
    app = build_app(
        [
            Route("/fail/{kind}", fail),
            failing("bug"),
            Route("/echo", echo_length, methods=["POST"]),
            Route("/routed/{kind}", RoutedFail(), methods=["GET"]),
            Route("/later/{kind}", fail),
        ],
        None,
        "test",
    )
    assert set(app.direct) == {
        ("GET", "/direct-bug"), ("HEAD", "/direct-bug"), ("POST", "/echo"),
        ("GET", "/metrics"), ("HEAD", "/metrics"),
    }  # fmt: skip
    # Past a route the edge does not call, Starlette's order could give it a path first.
    assert [route.path for route in app.templated] == ["/fail/{kind}"]


async def _which(request: Request) -> Response:
    return Response(f"{request.scope['route'].path} {sorted(request.path_params.items())}")


async def test_the_first_matching_template_answers_as_in_starlette() -> None:
    routes = [
        Route("/a/{x}", _which, methods=["POST"]),
        Route("/a/{x}", _which),
        Route("/a/{rest:path}", _which),
    ]
    transport = httpx.ASGITransport(app=build_app(routes, None, "test"))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/a/b")).text == "/a/{x} [('x', 'b')]"
        assert (await http.post("/a/b")).text == "/a/{x} [('x', 'b')]"
        assert (await http.get("/a/b/c")).text == "/a/{rest:path} [('rest', 'b/c')]"
        wrong = await http.delete("/a/b/c")
    assert wrong.json()["summary"] == "DELETE not allowed here"  # Starlette's answer


@WAYS
@pytest.mark.parametrize("kind", ["pushback", "refused", "pg", "slow"])
async def test_outages_and_overload_are_503_with_retry_after(way: str, kind: str) -> None:
    async with client() as http:
        resp = await http.get(f"{way}{kind}")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    body = resp.json()
    assert body["status"] == "ServiceNotAvailable"
    assert set(body) == {
        "request_id",
        "request_time",
        "response_time",
        "status",
        "summary",
        "result",
    }
    assert body["request_id"].startswith("prq_")


@WAYS
async def test_bugs_are_500_internal_error_envelopes_and_unknown_paths_404(way: str) -> None:
    async with client() as http:
        bug = await http.get(f"{way}bug")
        missing = await http.get("/nowhere")
        wrong = await http.post(f"{way}bug")
    assert (bug.status_code, bug.json()["status"]) == (500, "InternalError")
    assert (missing.status_code, missing.json()["status"]) == (404, "NotFound")
    assert wrong.json()["status"] == "NotFound"


def test_request_ids_are_distinct_across_pages_of_random_bytes() -> None:
    ids = [new_request_id() for _ in range(1000)]  # 16,000 bytes: several 4,096-byte pages
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"prq_[0-9a-f]{32}", i) for i in ids)


def test_a_forked_child_draws_fresh_request_ids() -> None:
    new_request_id()  # the parent holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave without running pytest's exit
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != new_request_id()
    assert child.startswith("prq_")


HANDLED: list[int] = []


async def echo_length(request: Request) -> Response:
    HANDLED.append(1)
    return Response(str(len(await request.body())))


ECHOES = pytest.mark.parametrize("echo", ["/echo", "/echo/routed"])


def limited_client(limit: int) -> httpx.AsyncClient:
    routes = [
        Route("/echo", echo_length, methods=["POST"]),
        Route("/echo/{way}", echo_length, methods=["POST"]),
    ]
    app = build_app(routes, None, "test", max_body_bytes=limit)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@ECHOES
async def test_a_body_within_the_limit_reaches_the_handler(echo: str) -> None:
    async with limited_client(1024) as http:
        resp = await http.post(echo, content=b"x" * 1024)
    assert resp.status_code == 200
    assert resp.text == "1024"


@ECHOES
async def test_a_body_announced_too_large_is_refused_before_the_handler_runs(echo: str) -> None:
    HANDLED.clear()
    async with limited_client(1024) as http:
        resp = await http.post(echo, content=b"x" * 1025)
    assert resp.status_code == 413
    payload = resp.json()
    assert payload["status"] == "ValidationError"
    assert payload["request_id"].startswith("prq_")
    assert payload["result"]["errors"] == [
        {"code": "AboveMaxLength", "detail": "request body exceeds 1024 bytes", "source": "/"}
    ]
    assert HANDLED == []


@ECHOES
async def test_a_streamed_body_is_refused_when_it_passes_the_limit(echo: str) -> None:
    offered: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            offered.append(1)
            yield b"y" * 512

    async with limited_client(2048) as http:
        resp = await http.post(echo, content=chunks())
    assert resp.status_code == 413
    assert resp.json()["result"]["errors"][0]["code"] == "AboveMaxLength"
    # The limit stops the reading: a chunk past it at most, not the 100 offered.
    assert len(offered) <= 6, len(offered)


@WAYS
async def test_a_value_postgresql_rejects_is_a_validation_error_not_a_retry(way: str) -> None:
    async with client() as http:
        resp = await http.get(f"{way}value")
    assert resp.status_code == 400
    assert "retry-after" not in resp.headers
    body = resp.json()
    assert body["status"] == "ValidationError"
    assert body["result"]["errors"][0]["code"] == "InvalidValue"


async def secret_page(_: Request) -> Response:
    return Response("ok")


async def test_request_logs_name_the_route_never_a_path_secret() -> None:
    routes = [Route("/v1/downloads/{secret}/{name}", secret_page), Route("/plain", secret_page)]
    app = build_app(routes, None, "test")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with structlog.testing.capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/v1/downloads/s3cr3t-capability/a.csv")).status_code == 200
            assert (await http.get("/nowhere/" + "x" * 500)).status_code == 404
            assert (await http.get("/plain")).status_code == 200
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert len(requests) == 3
    assert (requests[2]["route"], requests[2]["path"], requests[2]["status"]) == (
        "/plain",
        None,
        200,
    )
    assert requests[2]["request_id"].startswith("prq_")
    assert "s3cr3t-capability" not in repr(requests[0])
    assert requests[0]["route"] == "/v1/downloads/{secret}/{name}"
    assert requests[1]["route"] == "unmatched"
    assert len(requests[1]["path"]) == 200
