"""The read operations of a load test: search, receipts by hash, tiles and checkpoints.

What a console or an auditor does while events are logged: ``POST /v1/search`` for a term
drawn from the realistic events (an actor, an action, a status or a word of the messages;
``limit`` 20 and ``max_results`` 100, one console page), ``GET /v1/receipts/{hash}`` for an
event known to be sealed, and, from ``GET /v1/logs``, a level-0 hash tile of a log (partial at
its right edge, as a client following the log fetches it) or its latest checkpoint.

The hashes of sealed events come from a first search when the load starts and then from the
seal sampler, which learns of new ones as the run goes; the list of logs is read again every
few seconds so that tiles follow the logs' growth. On an empty log only searches run until
something is sealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any, Final

import aiohttp
import orjson

from auditlog.core.tiles import TILE_WIDTH, tile_path
from auditlog.loadtest.outcome import Outcome, failed, http_error

_KNOWN_HASHES: Final = 1_000
_LOGS_EVERY: Final = 3.0
SEARCH_LIMIT: Final = 20
SEARCH_MAX_RESULTS: Final = 100


class ReadTarget:
    """The query service's base URL, a token with the ``search`` scope, and what the reads have
    learnt: sealed hashes and the logs' sizes."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        events: list[dict[str, Any]],
        rng: random.Random,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.rng = rng
        self.terms = _search_terms(events)
        self.hashes: list[str] = []
        self.logs: list[tuple[str, int]] = []
        self._refresher: asyncio.Task[None] | None = None

    def learn(self, digest: str) -> None:
        """A hash now known to be sealed (from the seal sampler)."""
        if len(self.hashes) < _KNOWN_HASHES:
            self.hashes.append(digest)
        else:
            self.hashes[self.rng.randrange(_KNOWN_HASHES)] = digest

    async def prepare(self) -> None:
        await self._read_logs()
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError, TypeError):
            body = orjson.dumps({"query": 'message:""', "limit": 100, "max_results": 100})
            async with self.session.post(self.base_url + "/v1/search", data=body) as resp:
                if resp.status == 200:
                    found = orjson.loads(await resp.read())["result"]["events"]
                    for event in found:
                        self.learn(event["hash"])
        self._refresher = asyncio.create_task(self._refresh())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(_LOGS_EVERY)
            await self._read_logs()

    async def _read_logs(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, KeyError, TypeError):
            async with self.session.get(self.base_url + "/v1/logs") as resp:
                if resp.status == 200:
                    listed = orjson.loads(await resp.read())["result"]["logs"]
                    self.logs = [(log["log"], int(log["size"])) for log in listed]

    async def _get(self, path: str) -> Outcome:
        try:
            async with self.session.get(self.base_url + path) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return failed(exc)
        return Outcome() if status == 200 else Outcome(error=http_error(status, data))

    async def search(self, _sample: bool) -> Outcome:
        body = orjson.dumps(
            {
                "query": self.rng.choice(self.terms),
                "limit": SEARCH_LIMIT,
                "max_results": SEARCH_MAX_RESULTS,
            }
        )
        try:
            async with self.session.post(self.base_url + "/v1/search", data=body) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return failed(exc)
        return Outcome() if status == 200 else Outcome(error=http_error(status, data))

    async def receipt(self, sample: bool) -> Outcome:
        if not self.hashes:
            return await self.search(sample)
        return await self._get(f"/v1/receipts/{self.rng.choice(self.hashes)}")

    async def tile(self, sample: bool) -> Outcome:
        grown = [(log, size) for log, size in self.logs if size > 0]
        if not grown:
            return await self.search(sample)
        log, size = self.rng.choice(grown)
        if self.rng.random() < 0.2:
            return await self._get(f"/v1/logs/{log}/checkpoint")
        full = size // TILE_WIDTH
        index = self.rng.randrange(full + 1) if size % TILE_WIDTH else self.rng.randrange(full)
        width = TILE_WIDTH if index < full else size % TILE_WIDTH
        return await self._get(f"/v1/logs/{log}/{tile_path(0, index, width)}")


def _search_terms(events: list[dict[str, Any]]) -> list[str]:
    """Queries a person would type, drawn from the events the load logs."""
    terms: list[str] = []
    for event in events[:500]:
        if "actor" in event:
            terms.append(f'actor:"{event["actor"]}"')
        terms.append(f"action:{event['action']}")
        if "status" in event:
            terms.append(f"status:{event['status']}")
        words = [w for w in event["message"].split() if w.isalpha() and len(w) > 3]
        if words:
            terms.append(words[0].lower())
    return terms or ['message:""']
