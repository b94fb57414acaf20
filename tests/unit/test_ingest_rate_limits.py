"""Ingest's rate limits count events, answer 429 TooManyRequests with Retry-After, and a refused
request reaches neither the in-flight slots nor Kafka (the handlers, with stand-ins for Kafka
and the token table, on a clock driven by hand)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from auditlog.pg.tokens import TokenInfo
from auditlog.web.ratelimit import Limits, Rate
from ingest.publisher import IngestState
from tests.unit.ingest_served import bulk, handler_state, served

TOKENS = {
    "alt_a": TokenInfo("a", "a", frozenset({"log"}), None),
    "alt_b": TokenInfo("b", "b", frozenset({"log"}), "acme"),
    "alt_c": TokenInfo("c", "c", frozenset({"log"}), "acme"),
}


class Tokens:
    async def resolve(self, token: str) -> TokenInfo | None:
        return TOKENS.get(token)


class Producer:
    """Acknowledges every send at once and remembers it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, _topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Claims(IngestState):
    """Counts the slots claimed, to show a refused request claims none."""

    claimed: int

    def reserve(self, n: int) -> None:
        self.claimed = getattr(self, "claimed", 0) + n
        super().reserve(n)


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[httpx.AsyncClient, Claims, Producer, Clock]]:
    clock = Clock()
    producer = Producer()
    # 1,000 events a second and 1,500 saved up per token; 2,000 per tenant.
    limits = Limits(Rate(1000, 1500), Rate(2000, 2000), clock=clock)
    async with asyncio.TaskGroup() as tasks:
        state = handler_state(
            tasks, producer, Tokens(), max_in_flight=10_000, limits=limits, kind=Claims
        )
        assert isinstance(state, Claims)
        async with served(state) as http:
            yield http, state, producer, clock


def post(http: httpx.AsyncClient, path: str, body: bytes, token: str = "alt_a") -> Any:
    return http.post(path, content=body, headers={"Authorization": f"Bearer {token}"})


async def test_events_are_counted_and_a_refusal_claims_no_slot_and_sends_nothing(
    ingest: tuple[httpx.AsyncClient, Claims, Producer, Clock],
) -> None:
    http, state, producer, clock = ingest
    ok = await post(http, "/v2/log", bulk(1000))
    assert ok.status_code == 200, ok.text
    assert len(producer.sent) == 1000 and state.claimed == 1000
    # 500 events left in the bucket: the next 1,000 are refused whole.
    for path in ("/v2/log", "/v2/log_async"):
        refused = await post(http, path, bulk(1000))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert body["status"] == "TooManyRequests"
        assert "token" in body["summary"]
        assert set(body) >= {"request_id", "request_time", "response_time", "result"}
    assert len(producer.sent) == 1000 and state.claimed == 1000 and state.in_flight == 0
    # A single event still fits; 0.5 s later 999 are saved up, not yet 1,000.
    assert (await post(http, "/v1/log", orjson.dumps({"event": {"message": "x"}}))).is_success
    clock.now += 0.5
    assert (await post(http, "/v2/log", bulk(1000))).status_code == 429
    clock.now += 0.001
    assert (await post(http, "/v2/log", bulk(1000))).status_code == 200
    assert len(producer.sent) == 2001 and state.claimed == 2001


async def test_invalid_events_cost_too_and_a_token_past_its_limit_is_not_even_parsed(
    ingest: tuple[httpx.AsyncClient, Claims, Producer, Clock],
) -> None:
    http, state, producer, clock = ingest
    invalid = await post(http, "/v2/log", bulk(1500, message=""))
    assert invalid.status_code == 400 and invalid.json()["status"] == "ValidationError"
    # The bucket is empty: even a body that is not JSON gets 429, not a parse error.
    garbage = await post(http, "/v1/log", b"{not json")
    assert garbage.status_code == 429 and garbage.json()["status"] == "TooManyRequests"
    stream = orjson.dumps({"logs": [{"log_id": "1", "data": {"type": "s"}}]})
    assert (await post(http, "/v1/log_stream", stream)).status_code == 429
    assert producer.sent == [] and getattr(state, "claimed", 0) == 0
    clock.now += 1.5
    assert (await post(http, "/v1/log_stream", stream)).status_code == 200
    assert len(producer.sent) == 1


async def test_unknown_tokens_reach_no_bucket_and_tenants_share_one(
    ingest: tuple[httpx.AsyncClient, Claims, Producer, Clock],
) -> None:
    http, state, producer, _ = ingest
    for _ in range(3):
        assert (await post(http, "/v2/log", bulk(1000), token="alt_nobody")).status_code == 401
    assert len(state.limits.tokens) == 0 and len(state.limits.tenants) == 0
    # Tokens b and c both log for acme: 2,000 events a second between them.
    assert (await post(http, "/v2/log", bulk(1000), token="alt_b")).status_code == 200
    assert (await post(http, "/v2/log", bulk(1000), token="alt_c")).status_code == 200
    refused = await post(http, "/v1/log", orjson.dumps({"event": {"message": "x"}}), "alt_c")
    assert refused.status_code == 429
    assert "tenant" in refused.json()["summary"]
    # Token a has no tenant and its own budget.
    assert (await post(http, "/v2/log", bulk(1000))).status_code == 200
    assert len(producer.sent) == 3000
