"""The witness's HTTP edge: bodies past its limit are refused while read, malformed ones named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from auditlog.core.cosignature import Cosigner
from auditlog.core.hashing import get_hasher
from auditlog.verify.witness_server import MAX_BODY, WitnessState, create_app


def client(tmp_path: Path) -> httpx.AsyncClient:
    app = create_app(
        WitnessState(tmp_path / "witness.db"),
        {},
        get_hasher("rfc6962-sha256"),
        Cosigner.generate("witness.example"),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_an_announced_oversized_body_is_413(tmp_path: Path) -> None:
    async with client(tmp_path) as http:
        resp = await http.post("/add-checkpoint", content=b"x" * (MAX_BODY + 1))
    assert resp.status_code == 413
    assert resp.text == f"request body exceeds {MAX_BODY} bytes\n"


async def test_a_streamed_oversized_body_is_413_before_it_is_all_read(tmp_path: Path) -> None:
    offered: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1000):
            offered.append(1)
            yield b"z" * 1024

    async with client(tmp_path) as http:
        resp = await http.post("/add-checkpoint", content=chunks())
    assert resp.status_code == 413
    assert len(offered) <= MAX_BODY // 1024 + 2


async def test_a_small_malformed_body_is_400(tmp_path: Path) -> None:
    async with client(tmp_path) as http:
        resp = await http.post("/add-checkpoint", content=b"old 0\n")
    assert resp.status_code == 400
    assert resp.text.startswith("malformed request")
