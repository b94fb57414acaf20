"""HeadCache without a database: what happens to waiters when the read itself never runs."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, cast

import asyncpg
import pytest

from query.heads import HeadCache


def test_waiters_are_released_when_the_read_is_cancelled_before_it_starts() -> None:
    # A task group cancelled at shutdown can cancel a spawned read before its first step; the
    # requests waiting for it must end (cancelled), not wait forever.
    def spawn_cancelled(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.cancel()
        return task

    async def scenario() -> None:
        heads = HeadCache(cast(asyncpg.Pool, None), ttl=1.0, spawn=spawn_cancelled)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(heads.covering("log", 0), 2)
        assert not heads._pending

    asyncio.run(scenario())
