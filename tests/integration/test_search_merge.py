"""The search blocks' pending list merged off the seals' path (sealer/index_merge.py).

Blocks written with fast update wait in the GIN index's pending list; a merge moves them into
the index's tree, one session at a time, and the sealer's loop keeps doing so until it stops, or
gives up for good when the index cannot be merged (here: it is gone).
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import socket
from datetime import UTC, datetime

import asyncpg
import pytest
from prometheus_client import REGISTRY

from auditlog.pg import search_blocks
from auditlog.pg.locks import lock_room
from sealer.index_merge import merge_loop
from tests.conftest import Services, scratch_database

pytestmark = pytest.mark.integration

AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _blocks(first_block: int, count: int, rng: random.Random) -> list[tuple[object, ...]]:
    # ~1,200 keys a block, as realistic events give; 42 in every block, so a lookup has a
    # known answer.
    return [
        ("audit-0", b * 64, b * 64 + 63, AT, AT, [42, *rng.sample(range(1, 2**31), 1200)])
        for b in range(first_block, first_block + count)
    ]


async def _write(conn: asyncpg.Connection, rows: list[tuple[object, ...]]) -> None:
    async with conn.transaction():
        await search_blocks.copy_blocks(conn, rows)


async def _found(conn: asyncpg.Connection, key: int) -> int:
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # through the GIN index
        found: int = await conn.fetchval(
            "SELECT count(*) FROM search_blocks WHERE keys @> ARRAY[$1::integer]", key
        )
    return found


def test_a_merge_empties_the_pending_list_and_the_index_still_finds_every_block(
    services: Services,
) -> None:
    rng = random.Random(1)
    rows = _blocks(0, 30, rng)
    name = f"auditlog_merge_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:

        async def check() -> None:
            conn = await asyncpg.connect(url)
            try:
                await _write(conn, rows)
                assert await _found(conn, 42) == 30  # read from the pending list
                assert await search_blocks.merge_pending(conn) > 0
                assert await search_blocks.merge_pending(conn) == 0
                assert await _found(conn, 42) == 30  # read from the tree
                for row in rows[::7]:
                    keys = row[5]
                    assert isinstance(keys, list)
                    assert await _found(conn, keys[-1]) >= 1
            finally:
                await conn.close()

        asyncio.run(check())


def test_one_session_at_a_time_leads_the_merges(services: Services) -> None:
    name = f"auditlog_merge_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:

        async def check() -> None:
            first = await asyncpg.connect(url)
            second = await asyncpg.connect(url)
            try:
                assert await search_blocks.lead_merges(first)
                assert await search_blocks.lead_merges(first)  # still its own
                assert not await search_blocks.lead_merges(second)
                await first.close()  # a sealer gone: its lock with it
                assert await search_blocks.lead_merges(second)
            finally:
                await first.close()
                await second.close()

        asyncio.run(check())


def _merged_pages() -> float:
    return REGISTRY.get_sample_value("auditlog_sealer_search_merged_pages_total") or 0.0


def _upkeep_stopped(part: str) -> float | None:
    return REGISTRY.get_sample_value("auditlog_sealer_search_upkeep_stopped", {"part": part})


def _gauge(name: str) -> float:
    value = REGISTRY.get_sample_value(f"auditlog_sealer_search_{name}")
    assert value is not None
    return value


async def _until_merged(before: float) -> None:
    for _ in range(600):  # 30 s at most
        if _merged_pages() > before:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the loop merged nothing in 30 s")


def test_the_loop_merges_while_it_leads_and_gives_up_when_the_index_is_gone(
    services: Services,
) -> None:
    name = f"auditlog_merge_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:

        async def check() -> None:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            other = await asyncpg.connect(url)
            assert pool is not None
            try:
                # Another sealer leads: this one's loop only tries to take the lock.
                assert await search_blocks.lead_merges(other)
                await _write(other, _blocks(0, 10, random.Random(3)))
                before = _merged_pages()
                stopping = asyncio.Event()
                loop = asyncio.create_task(merge_loop(pool, 0.05, stopping))
                await asyncio.sleep(0.5)
                assert _merged_pages() == before
                # Not leading, it has no figures of the generations and the lock table.
                assert math.isnan(_gauge("generations")) and math.isnan(_gauge("lock_room"))
                # That sealer gone, this one merges from its next turn, and counts.
                await other.execute("SELECT pg_advisory_unlock_all()")
                await _until_merged(before)
                assert await search_blocks.merge_pending(other) == 0
                assert _gauge("generations") == 1
                room = await lock_room(other)
                assert _gauge("lock_room") == room.searches > 0
                # Stopped, it leaves the lock behind for the next sealer.
                stopping.set()
                async with asyncio.timeout(5):
                    await loop
                assert await search_blocks.lead_merges(other)
                await other.execute("SELECT pg_advisory_unlock_all()")

                assert _upkeep_stopped("merge") == 0
                # An index that cannot be merged ends the loop by itself (the sealer goes on),
                # and says so on /metrics for the alert.
                await pool.execute("DROP INDEX search_blocks_keys")
                async with asyncio.timeout(5):
                    await merge_loop(pool, 0.05, asyncio.Event())
                assert _upkeep_stopped("merge") == 1
            finally:
                await other.close()
                await pool.close()

        asyncio.run(check())


def test_the_loop_outlasts_a_database_it_cannot_reach() -> None:
    # Nothing listens on the port: every turn fails to connect, the loop waits longer each time
    # and leaves when the sealer stops, instead of ending the sealer's task group.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def check() -> None:
        pool = await asyncpg.create_pool(
            f"postgresql://nobody@127.0.0.1:{port}/none", min_size=0, max_size=1
        )
        assert pool is not None
        try:
            stopping = asyncio.Event()
            loop = asyncio.create_task(merge_loop(pool, 0.01, stopping))
            await asyncio.sleep(0.5)
            assert not loop.done()
            stopping.set()
            async with asyncio.timeout(5):
                await loop
        finally:
            await pool.close()

    asyncio.run(check())
