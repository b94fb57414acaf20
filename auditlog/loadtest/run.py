"""`auditlog loadtest`: drive an ingest endpoint and report throughput and latency.

Two shapes of load, both bounded in time and in the number of requests so a run always stops
by itself:

* closed loop: ``concurrency`` clients, each sending its next request when the previous one was
  answered (how much can one ingest take?);
* open loop: requests start at a fixed ``rate`` whatever the answers (what latency does a
  client see at that rate?). Requests that cannot start on time are counted, not queued.

``--bulk N`` sends ``/v2/log`` requests of N events instead of single ``/v1/log`` events.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import orjson

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


def request_body(bulk: int, seq: int = 0) -> tuple[str, bytes, int]:
    """(path, body, events) of one request: a single event, or a bulk of ``bulk`` events."""
    event = {
        "message": "Security updated",
        "action": "Off",
        "actor": "dennis.nedry@ingen.com",
        "target": "Visitor center",
        "status": f"load {seq}",
    }
    if bulk <= 1:
        return "/v1/log", orjson.dumps({"event": event}), 1
    events = [{"event": {**event, "status": f"load {seq}.{i}"}} for i in range(bulk)]
    return "/v2/log", orjson.dumps({"events": events}), bulk


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
    base_url: str, token: str, *, seconds: float, concurrency: int, bulk: int = 1
) -> LoadResult:
    path, body, events = request_body(bulk)
    tally = _Tally()
    deadline = time.perf_counter() + seconds
    async with _session(token, concurrency) as session:

        async def client() -> None:
            sent = 0
            while time.perf_counter() < deadline and sent < MAX_REQUESTS:
                await tally.send(session, base_url + path, body, events)
                sent += 1

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return tally.result(time.perf_counter() - began)


async def open_loop(
    base_url: str, token: str, *, seconds: float, rate: float, bulk: int = 1
) -> LoadResult:
    path, body, events = request_body(bulk)
    tally = _Tally()
    total = min(MAX_REQUESTS, int(seconds * rate))
    async with _session(token, 1024) as session:
        tasks: list[asyncio.Task[None]] = []
        began = time.perf_counter()
        for i in range(total):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(tally.send(session, base_url + path, body, events)))
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
) -> LoadResult:
    if rate is not None:
        return asyncio.run(open_loop(base_url, token, seconds=seconds, rate=rate, bulk=bulk))
    return asyncio.run(
        closed_loop(base_url, token, seconds=seconds, concurrency=concurrency, bulk=bulk)
    )
