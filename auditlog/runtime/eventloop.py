"""Running a service's main coroutine: on uvloop when it is installed, asyncio's loop otherwise;
and the pause its periodic tasks take between rounds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


def run_main(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to completion in a new event loop, as ``asyncio.run`` does."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``stopping`` is set meanwhile; True when it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()
    return stopping.is_set()
