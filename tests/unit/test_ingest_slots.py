"""Ingest's in-flight slots come back whatever happens to the request that claimed them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from auditlog.core.envelope import Envelope
from ingest.publisher import InFlightFull, IngestState
from ingest.settings import Settings


class BrokenPool:
    """A pool whose database is gone: every statement fails as a lost connection does."""

    async def execute(self, *_: Any) -> str:
        raise ConnectionRefusedError("database down")


def state(tasks: asyncio.TaskGroup, max_in_flight: int = 10) -> IngestState:
    return IngestState(
        settings=Settings(max_in_flight=max_in_flight),
        producer=None,  # type: ignore[arg-type]  # never reached: the insert fails first
        tokens=None,  # type: ignore[arg-type]
        pool=BrokenPool(),  # type: ignore[arg-type]
        tasks=tasks,
        schemas=None,  # type: ignore[arg-type]
    )


def envelopes(n: int) -> list[Envelope]:
    return [Envelope({"message": f"m{i}"}, "2026-12-04T00:00:00.000000Z") for i in range(n)]


async def test_a_failed_request_store_insert_gives_the_slots_back() -> None:
    async with asyncio.TaskGroup() as tasks:
        st = state(tasks)
        for _ in range(5):  # more attempts than the bound would allow if slots leaked
            with pytest.raises(ConnectionRefusedError):
                await st.start_async("prq_x", "tok", envelopes(4), [None] * 4, {})
        assert st.in_flight == 0


async def test_a_full_service_pushes_back_without_claiming() -> None:
    async with asyncio.TaskGroup() as tasks:
        st = state(tasks, max_in_flight=3)
        with pytest.raises(InFlightFull):
            await st.start_async("prq_y", "tok", envelopes(4), [None] * 4, {})
        assert st.in_flight == 0
