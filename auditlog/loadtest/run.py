"""The ingest benchmark's load engine (``bench/bench_ingest.py``); ``auditlog loadtest`` itself
is :mod:`auditlog.loadtest.runner` (docs/loadtest.md).

Two shapes of load, both bounded in time and in the number of requests so a run always stops
by itself:

* closed loop: ``concurrency`` clients, each sending its next request when the previous one was
  answered (how much can one ingest take?);
* open loop: requests start at a fixed ``rate`` whatever the answers. Latency here is measured
  from each request's actual start, not its due time, and late starts are not counted: near
  saturation it understates what clients wait (coordinated omission), which
  :mod:`auditlog.loadtest.engine` does not.

``--bulk N`` sends ``/v2/log`` requests of N events instead of single ``/v1/log`` events. The
events are realistic (:mod:`auditlog.loadtest.events`: ids, addresses, paths and free text,
~420-byte envelopes at the median); ``--templated`` sends the old best case instead.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson

from auditlog.loadtest.events import EventGenerator

MAX_REQUESTS = 10_000_000


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    events: int
    errors: int
    seconds: float
    latencies: tuple[float, ...]
    statuses: dict[int, int]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self, label: str) -> str:
        return (
            f"{label}: {self.requests / self.seconds:,.0f} requests/s, "
            f"{self.events / self.seconds:,.0f} events/s, "
            f"p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms, "
            f"max {self.percentile(100) * 1000:.1f} ms, errors {self.errors}"
            + (f" {dict(sorted(self.statuses.items()))}" if self.errors else "")
        )


class Bodies:
    """Request bodies of realistic events (:mod:`auditlog.loadtest.events`), built before the
    load starts and sent in turn, so that making events costs the measurement nothing.

    ``pool_events`` events are made (about 0.5 KiB each) and cut into requests of ``bulk``
    events (``/v2/log``) or one event each (``/v1/log``); after the last, the first comes again
    (the server stamps ``received_at``, so every sealed envelope is still distinct).
    ``templated`` makes the old best case: one message pattern and a counter.
    """

    def __init__(
        self, bulk: int, *, templated: bool = False, seed: int = 0, pool_events: int = 20_000
    ) -> None:
        generator = EventGenerator(seed, templated=templated)
        self.events_per_request = max(1, bulk)
        requests = max(1, pool_events // self.events_per_request)
        if self.events_per_request == 1:
            self.path = "/v1/log"
            self._bodies = [orjson.dumps({"event": generator.event()}) for _ in range(requests)]
        else:
            self.path = "/v2/log"
            per_request = range(self.events_per_request)
            self._bodies = [
                orjson.dumps({"events": [{"event": generator.event()} for _ in per_request]})
                for _ in range(requests)
            ]
        self._next = 0

    def next(self) -> bytes:
        body = self._bodies[self._next]
        self._next = (self._next + 1) % len(self._bodies)
        return body


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.ok = 0
        self.events = 0
        self.errors = 0

    async def send(
        self, session: aiohttp.ClientSession, url: str, body: bytes, events: int
    ) -> None:
        began = time.perf_counter()
        try:
            async with session.post(url, data=body) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.ok += 1
            self.events += events
            self.latencies.append(time.perf_counter() - began)
        else:
            self.errors += 1

    def result(self, seconds: float) -> LoadResult:
        return LoadResult(
            self.ok, self.events, self.errors, seconds, tuple(self.latencies), self.statuses
        )


def _session(token: str, connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=30),
    )


async def closed_loop(
    base_url: str,
    token: str,
    *,
    seconds: float,
    concurrency: int,
    bulk: int = 1,
    templated: bool = False,
) -> LoadResult:
    bodies = Bodies(bulk, templated=templated)
    tally = _Tally()
    deadline = time.perf_counter() + seconds
    async with _session(token, concurrency) as session:

        async def client() -> None:
            sent = 0
            while time.perf_counter() < deadline and sent < MAX_REQUESTS:
                await tally.send(
                    session, base_url + bodies.path, bodies.next(), bodies.events_per_request
                )
                sent += 1

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return tally.result(time.perf_counter() - began)


async def open_loop(
    base_url: str,
    token: str,
    *,
    seconds: float,
    rate: float,
    bulk: int = 1,
    templated: bool = False,
) -> LoadResult:
    bodies = Bodies(bulk, templated=templated)
    url = base_url + bodies.path
    tally = _Tally()
    total = min(MAX_REQUESTS, int(seconds * rate))
    async with _session(token, 1024) as session:
        tasks: list[asyncio.Task[None]] = []
        began = time.perf_counter()
        for i in range(total):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(
                asyncio.create_task(
                    tally.send(session, url, bodies.next(), bodies.events_per_request)
                )
            )
        await asyncio.gather(*tasks)
        return tally.result(max(seconds, time.perf_counter() - began))


def run(
    base_url: str,
    token: str,
    *,
    seconds: float,
    rate: float | None,
    concurrency: int,
    bulk: int,
    templated: bool = False,
) -> LoadResult:
    if rate is not None:
        return asyncio.run(
            open_loop(base_url, token, seconds=seconds, rate=rate, bulk=bulk, templated=templated)
        )
    return asyncio.run(
        closed_loop(
            base_url,
            token,
            seconds=seconds,
            concurrency=concurrency,
            bulk=bulk,
            templated=templated,
        )
    )
