"""The HTTP shell: every answer is a Pangea envelope, and outages are 503s, not 500s."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

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


def client() -> httpx.AsyncClient:
    app = build_app([Route("/fail/{kind}", fail)], None, "test")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize("kind", ["pushback", "refused", "pg", "slow"])
async def test_outages_and_overload_are_503_with_retry_after(kind: str) -> None:
    async with client() as http:
        resp = await http.get(f"/fail/{kind}")
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


async def test_bugs_are_500_internal_error_envelopes_and_unknown_paths_404() -> None:
    async with client() as http:
        bug = await http.get("/fail/bug")
        missing = await http.get("/nowhere")
        wrong = await http.post("/fail/bug")
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


def limited_client(limit: int) -> httpx.AsyncClient:
    app = build_app(
        [Route("/echo", echo_length, methods=["POST"])], None, "test", max_body_bytes=limit
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_body_within_the_limit_reaches_the_handler() -> None:
    async with limited_client(1024) as http:
        resp = await http.post("/echo", content=b"x" * 1024)
    assert resp.status_code == 200
    assert resp.text == "1024"


async def test_a_body_announced_too_large_is_refused_before_the_handler_runs() -> None:
    HANDLED.clear()
    async with limited_client(1024) as http:
        resp = await http.post("/echo", content=b"x" * 1025)
    assert resp.status_code == 413
    payload = resp.json()
    assert payload["status"] == "ValidationError"
    assert payload["request_id"].startswith("prq_")
    assert payload["result"]["errors"] == [
        {"code": "AboveMaxLength", "detail": "request body exceeds 1024 bytes", "source": "/"}
    ]
    assert HANDLED == []


async def test_a_streamed_body_is_refused_when_it_passes_the_limit() -> None:
    offered: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            offered.append(1)
            yield b"y" * 512

    async with limited_client(2048) as http:
        resp = await http.post("/echo", content=chunks())
    assert resp.status_code == 413
    assert resp.json()["result"]["errors"][0]["code"] == "AboveMaxLength"
    # The limit stops the reading: a chunk past it at most, not the 100 offered.
    assert len(offered) <= 6, len(offered)


async def test_a_value_postgresql_rejects_is_a_validation_error_not_a_retry() -> None:
    async with client() as http:
        resp = await http.get("/fail/value")
    assert resp.status_code == 400
    assert "retry-after" not in resp.headers
    body = resp.json()
    assert body["status"] == "ValidationError"
    assert body["result"]["errors"][0]["code"] == "InvalidValue"


async def secret_page(_: Request) -> Response:
    return Response("ok")


async def test_request_logs_name_the_route_never_a_path_secret() -> None:
    app = build_app([Route("/v1/downloads/{secret}/{name}", secret_page)], None, "test")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with structlog.testing.capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/v1/downloads/s3cr3t-capability/a.csv")).status_code == 200
            assert (await http.get("/nowhere/" + "x" * 500)).status_code == 404
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert len(requests) == 2
    assert "s3cr3t-capability" not in repr(requests[0])
    assert requests[0]["route"] == "/v1/downloads/{secret}/{name}"
    assert requests[1]["route"] == "unmatched"
    assert len(requests[1]["path"]) == 200
