"""The HTTP shell: every answer is a Pangea envelope, and outages are 503s, not 500s."""

from __future__ import annotations

import os
import re

import asyncpg
import httpx
import pytest
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
}


async def fail(request: Request) -> Response:
    raise FAILURES[request.path_params["kind"]]


def client() -> httpx.AsyncClient:
    app = build_app([Route("/fail/{kind}", fail)], None, "test")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize("kind", ["pushback", "refused", "pg"])
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
