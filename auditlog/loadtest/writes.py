"""The logging operations of a load test: HTTP single, bulk and async, and the Kafka producer.

Request bodies are built before the load starts, from the realistic event generator
(:mod:`auditlog.loadtest.events`), and sent in turn, so making events costs the measurement
nothing. After the last body the first comes again; the server stamps ``received_at``, so every
sealed envelope is still distinct. The Kafka operation builds each envelope as it sends (the
producer library validates and hashes it, which is part of what a producer pays).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import cycle
from typing import Any

import aiohttp
import orjson
from aiokafka.errors import KafkaError

from auditlog.core.errors import InvalidEvent, Pushback
from auditlog.loadtest.events import EventGenerator
from auditlog.loadtest.outcome import Outcome, failed, http_error
from auditlog.producer import AuditProducer

POOL_EVENTS = 5_000
# A success whose body is not the Pangea answer it should be: a fault of the service, counted as
# an error (only sampled answers are read, so only they can show it).
UNREADABLE = "unreadable answer"


def event_pool(
    seed: int, events: int, *, templated: bool = False, tenant: str | None = None
) -> list[dict[str, Any]]:
    """``events`` events; with ``tenant``, every one carries that ``tenant_id`` (a tenant-bound
    token may log for its own tenant only, and a test's events are then easy to tell apart)."""
    generator = EventGenerator(seed, templated=templated)
    pool = [generator.event() for _ in range(events)]
    if tenant is not None:
        for event in pool:
            event["tenant_id"] = tenant
    return pool


def bodies(events: list[dict[str, Any]], per_request: int, *, single: bool) -> Iterator[bytes]:
    """``/v1/log`` bodies of one event, or ``/v2/log`` bodies of ``per_request``, endlessly."""
    if single:
        built = [orjson.dumps({"event": e}) for e in events]
    else:
        chunks = [events[i : i + per_request] for i in range(0, len(events), per_request)]
        built = [orjson.dumps({"events": [{"event": e} for e in c]}) for c in chunks if c]
    return cycle(built)


class HttpLog:
    """``POST /v1/log`` (``bulk`` 1), ``/v2/log`` or ``/v2/log_async`` (``asynchronous``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        events: list[dict[str, Any]],
        *,
        bulk: int = 1,
        asynchronous: bool = False,
    ) -> None:
        self.session = session
        self.per_request = max(1, bulk)
        single = self.per_request == 1 and not asynchronous
        path = "/v1/log" if single else "/v2/log_async" if asynchronous else "/v2/log"
        self.url = base_url + path
        self.asynchronous = asynchronous
        self._bodies = bodies(events, self.per_request, single=single)
        self._single = single

    async def __call__(self, sample: bool) -> Outcome:
        body = next(self._bodies)
        try:
            async with self.session.post(self.url, data=body) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return failed(exc)
        if self.asynchronous and status in (200, 202):
            # 202: accepted, sealed later; its request_id leads to the hashes. A 200 means the
            # server answered at once, with the results themselves.
            return self._accepted(status, data, sample)
        if status != 200:
            return Outcome(error=http_error(status, data))
        count = self.per_request
        if not sample:
            return Outcome(events=count)
        try:
            result = orjson.loads(data)["result"]
            first = result if self._single else result["results"][0]
            return Outcome(events=count, hash=str(first["hash"]))
        except (orjson.JSONDecodeError, LookupError, TypeError):
            return Outcome(error=UNREADABLE)

    def _accepted(self, status: int, data: bytes, sample: bool) -> Outcome:
        if not sample:
            return Outcome(events=self.per_request)
        try:
            parsed = orjson.loads(data)
            if status == 200:
                digest = str(parsed["result"]["results"][0]["hash"])
                return Outcome(events=self.per_request, hash=digest)
            return Outcome(events=self.per_request, request_id=str(parsed["request_id"]))
        except (orjson.JSONDecodeError, LookupError, TypeError):
            return Outcome(error=UNREADABLE)


class KafkaLog:
    """One event at a time through the producer library, straight to the topic (``acks=all``:
    the latency is the time to Kafka's acknowledgement)."""

    def __init__(self, producer: AuditProducer, events: list[dict[str, Any]]) -> None:
        self.producer = producer
        self._events = cycle(events)

    async def __call__(self, sample: bool) -> Outcome:
        try:
            digest = await self.producer.log(next(self._events))
        except (Pushback, InvalidEvent, KafkaError, TimeoutError) as exc:
            return failed(exc)
        return Outcome(events=1, hash=digest if sample else None)
