"""Logged → sealed latency: follow a sample of logged events until their receipts exist.

An event is *logged* when ingest (or Kafka, for the producer) acknowledged it, and *sealed*
when the query service can prove it: ``GET /v1/receipts/{hash}`` answers 200 once a signed
checkpoint covers it. The sampler follows about ``wanted`` events spread over the run (every
k-th logging request, k from the planned count), polling each one's receipt every 20 ms for
the first 0.5 s, then every 100 ms, and every 500 ms after 2 s; the latency is from the
acknowledgement to the first 200, so it is exact to within one poll interval plus one receipt
request. For ``/v2/log_async`` the acknowledgement is the 202, and the hash is first read from
``GET /request/{id}``.

The poll needs a token with the ``search`` scope and, without ``received_at``, the event-hash
index (on by default; docs/query.md). When the service refuses for either reason the sampler
stops and the report says why instead of reporting a latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import aiohttp
import orjson

from auditlog.loadtest.histogram import Histogram
from auditlog.loadtest.outcome import Outcome, http_error

# (waited at least, poll every): often while a seal is likely, less often later, so that a
# stalled sealer does not turn the sampler itself into a load on the query service.
POLLS: Final = ((0.0, 0.02), (0.5, 0.1), (2.0, 0.5))


def poll_interval(waited: float) -> float:
    return next(every for after, every in reversed(POLLS) if waited >= after)


class SealSampler:
    def __init__(
        self,
        query_session: aiohttp.ClientSession,
        query_url: str,
        ingest_session: aiohttp.ClientSession,
        ingest_url: str,
        *,
        wanted: int,
        planned_logging_requests: int,
        on_sealed: Callable[[str], None] = lambda _h: None,
    ) -> None:
        self.query_session, self.query_url = query_session, query_url
        self.ingest_session, self.ingest_url = ingest_session, ingest_url
        self.wanted = wanted
        self.stride = max(1, planned_logging_requests // max(1, wanted))
        self.on_sealed = on_sealed
        self.latency = Histogram()
        self.sampled = 0
        self.unsealed = 0
        self.errors: dict[str, int] = {}
        self.unavailable: str | None = None
        self._seen = 0
        self._chosen = 0  # requests chosen before they were sent; some fail and are not followed
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadline = float("inf")

    def should_sample(self) -> bool:
        """Asked once per logging request, before it is sent."""
        self._seen += 1
        chosen = (
            self.unavailable is None
            and self._chosen < self.wanted
            and self._seen % self.stride == 1 % self.stride
        )
        self._chosen += chosen
        return chosen

    def follow(self, outcome: Outcome, acknowledged: float) -> None:
        if outcome.hash is None and outcome.request_id is None:
            return
        self.sampled += 1
        task = asyncio.create_task(self._follow(outcome, acknowledged))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, seconds: float) -> None:
        """Let the samples still unsealed have ``seconds`` more, then count them unsealed."""
        self._deadline = time.perf_counter() + seconds
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "sampled": self.sampled,
            "sealed": self.latency.count,
            "unsealed": self.unsealed,
            "poll_ms": [[after * 1000, every * 1000] for after, every in POLLS],
            "latency_ms": self.latency.summary_ms(),
        }
        if self.errors:
            out["errors"] = dict(self.errors)
        if self.unavailable:
            out["unavailable"] = self.unavailable
        return out

    async def _follow(self, outcome: Outcome, acknowledged: float) -> None:
        digest = outcome.hash
        if digest is None and outcome.request_id is not None:
            digest = await self._async_hash(outcome.request_id)
        if digest is None:
            self.unsealed += 1
            return
        url = f"{self.query_url}/v1/receipts/{digest}"
        while self.unavailable is None:
            try:
                async with self.query_session.get(url) as resp:
                    status = resp.status
                    data = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                kind = type(exc).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
                status, data = 0, b""
            if status == 200:
                self.latency.record_seconds(time.perf_counter() - acknowledged)
                self.on_sealed(digest)
                return
            if status == 400:
                self.unavailable = (
                    "the query service finds receipts by hash only with the event-hash index,"
                    " which this deployment does not keep (docs/query.md)"
                )
            elif status in (401, 403):
                self.unavailable = (
                    f"the read token cannot read receipts ({http_error(status, data)});"
                    " give --read-token a token with the search scope"
                )
            elif status not in (0, 404):
                kind = http_error(status, data)
                self.errors[kind] = self.errors.get(kind, 0) + 1
            now = time.perf_counter()
            if now > self._deadline:
                self.unsealed += 1
                return
            await asyncio.sleep(poll_interval(now - acknowledged))

    async def _async_hash(self, request_id: str) -> str | None:
        """The first hash of an async request's result, once its events are in Kafka."""
        url = f"{self.ingest_url}/request/{request_id}"
        while time.perf_counter() <= self._deadline:
            try:
                async with self.ingest_session.get(url) as resp:
                    if resp.status == 200:
                        result = orjson.loads(await resp.read())["result"]
                        return str(result["results"][0]["hash"])
                    await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(POLLS[1][1])
        return None
