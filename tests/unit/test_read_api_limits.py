"""The verifier's HTTP client reads and inflates a bounded amount, whatever a server sends."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from auditlog.verify import read_api
from auditlog.verify.read_api import ReadApi, ReadApiError
from tests.http_standin import standing

BODIES: dict[str, tuple[bytes, bool]] = {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body, gzipped = BODIES[self.path]
        self.send_response(200)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(read_api, "MAX_BODY", 1 << 20)
    with standing(Handler) as url:
        yield url


def test_a_small_gzipped_answer_is_inflated(server: str) -> None:
    BODIES["/ok"] = (gzip.compress(b"hello" * 100), True)
    with ReadApi(server) as api:
        assert api.get("/ok") == (200, b"hello" * 100, "")


def test_a_gzip_bomb_is_refused(server: str) -> None:
    BODIES["/bomb"] = (gzip.compress(b"\0" * (8 << 20)), True)  # 8 KiB that inflate to 8 MiB
    assert len(BODIES["/bomb"][0]) < 64 * 1024
    with ReadApi(server) as api, pytest.raises(ReadApiError, match="inflates past"):
        api.get("/bomb")


def test_an_oversized_plain_answer_is_refused(server: str) -> None:
    BODIES["/big"] = (b"x" * (2 << 20), False)
    with ReadApi(server) as api, pytest.raises(ReadApiError, match="answer past"):
        api.get("/big")


def test_malformed_gzip_is_a_read_api_error(server: str) -> None:
    BODIES["/bad"] = (b"not gzip at all", True)
    with ReadApi(server) as api, pytest.raises(ReadApiError, match="malformed gzip"):
        api.get("/bad")
