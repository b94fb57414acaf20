"""A worker with no room in flight refuses a request before validating it (or, when full,
before reading its body): 503 ServiceNotAvailable with Retry-After, nothing sent, nothing
charged to the rate limits (the handlers, with stand-ins for Kafka and the token table, and a
Kafka whose acknowledgements the test releases)."""

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

TOKEN = TokenInfo("a", "a", frozenset({"log"}), None)
MAX_IN_FLIGHT = 1500
BURST = 10_000


class Tokens:
    async def resolve(self, token: str) -> TokenInfo | None:
        return TOKEN if token == "alt_a" else None


class HeldProducer:
    """Takes every send, and acknowledges them only when the test says so."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.acks: list[asyncio.Future[None]] = []
        self.sending = asyncio.Condition()

    async def send(self, _topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sent.append(value)
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        async with self.sending:
            self.sending.notify_all()
        return ack

    async def until_sent(self, count: int, request: asyncio.Task[Any]) -> None:
        """Wait until ``count`` events were sent in all, failing if ``request`` ends first."""

        async def enough() -> None:
            async with self.sending:
                await self.sending.wait_for(lambda: len(self.sent) >= count)

        waiting = asyncio.create_task(enough())
        await asyncio.wait((waiting, request), return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            raise AssertionError(f"answered before its events were sent: {request.result().text}")

    def acknowledge(self) -> None:
        for ack in self.acks:
            if not ack.done():
                ack.set_result(None)


@pytest.fixture
async def ingest() -> AsyncIterator[tuple[httpx.AsyncClient, IngestState, HeldProducer, Limits]]:
    producer = HeldProducer()
    limits = Limits(Rate(BURST, BURST), Rate(BURST, BURST), clock=lambda: 0.0)
    async with asyncio.TaskGroup() as tasks:
        state = handler_state(tasks, producer, Tokens(), max_in_flight=MAX_IN_FLIGHT, limits=limits)
        async with served(state) as http:
            yield http, state, producer, limits


def post(http: httpx.AsyncClient, path: str, body: bytes) -> Any:
    return http.post(path, content=body, headers={"Authorization": "Bearer alt_a"})


async def held(http: httpx.AsyncClient, producer: HeldProducer, n: int) -> asyncio.Task[Any]:
    """A request of ``n`` events, sent and waiting for Kafka's acknowledgement."""
    target = len(producer.sent) + n
    pending = asyncio.create_task(post(http, "/v2/log", bulk(n)))
    await producer.until_sent(target, pending)
    return pending


def assert_charged(limits: Limits, events: int) -> None:
    """The token's bucket (10,000, on a clock that stands still) was charged ``events``."""
    assert limits.tokens.wait("a", BURST - events) == 0
    assert limits.tokens.wait("a", BURST - events + 1) > 0


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["status"] == "ServiceNotAvailable"


async def test_no_room_in_flight_refuses_before_validating_and_charges_nothing(
    ingest: tuple[httpx.AsyncClient, IngestState, HeldProducer, Limits],
) -> None:
    http, state, producer, limits = ingest
    pending = await held(http, producer, 1000)
    assert state.in_flight == 1000
    assert_charged(limits, 1000)

    # 1,000 more events do not fit in the 500 left: refused whole, even invalid ones (a 400
    # would mean they were validated first), on every publishing endpoint.
    for path in ("/v2/log", "/v2/log_async"):
        assert_unavailable(await post(http, path, bulk(1000, message="")))
    # 500 fit, and are validated as usual; so is a request above the 1,000 events allowed.
    invalid = await post(http, "/v2/log", bulk(500, message=""))
    assert invalid.status_code == 400 and invalid.json()["status"] == "ValidationError"
    too_many = await post(http, "/v2/log", bulk(1001))
    assert too_many.status_code == 400 and "limit is 1000" in too_many.json()["summary"]
    assert len(producer.sent) == 1000 and state.in_flight == 1000
    assert_charged(limits, 2501)  # the refused 2,000 cost nothing; invalid events do cost

    producer.acknowledge()
    assert (await pending).status_code == 200
    assert state.in_flight == 0
    again = await held(http, producer, 1000)
    producer.acknowledge()
    assert (await again).status_code == 200


async def test_a_full_worker_refuses_before_reading_the_body(
    ingest: tuple[httpx.AsyncClient, IngestState, HeldProducer, Limits],
) -> None:
    http, state, producer, _ = ingest
    pending = [await held(http, producer, 1000), await held(http, producer, 500)]
    assert state.in_flight == MAX_IN_FLIGHT
    # Not even parsed: a body that is not JSON gets 503, not a validation error.
    assert_unavailable(await post(http, "/v1/log", b"{not json"))
    stream = orjson.dumps({"logs": [{"log_id": "1", "data": {"type": "s"}}]})
    assert_unavailable(await post(http, "/v1/log_stream", stream))
    assert len(producer.sent) == MAX_IN_FLIGHT
    producer.acknowledge()
    assert [(await p).status_code for p in pending] == [200, 200]
    event = orjson.dumps({"event": {"message": "x"}})
    single = asyncio.create_task(post(http, "/v1/log", event))
    await producer.until_sent(MAX_IN_FLIGHT + 1, single)
    producer.acknowledge()
    assert (await single).status_code == 200
