"""The pause periodic tasks take between rounds: the whole time, or until stopping is set."""

from __future__ import annotations

import asyncio
import time

from auditlog.runtime.eventloop import pause


def test_a_pause_lasts_its_time_when_nothing_stops_it() -> None:
    async def check() -> None:
        stopping = asyncio.Event()
        began = time.monotonic()
        assert await pause(stopping, 0.05) is False
        assert time.monotonic() - began >= 0.04

    asyncio.run(check())


def test_stopping_ends_a_pause_early_and_says_so() -> None:
    async def check() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, stopping.set)
        began = time.monotonic()
        assert await pause(stopping, 30) is True
        assert time.monotonic() - began < 5
        assert await pause(stopping, 30) is True  # already set: no wait at all

    asyncio.run(check())
