"""The search blocks' pending list merged off the seals' path (sealer/index_merge.py).

Blocks written with fast update wait in the GIN index's pending list; a merge moves them into
the index's tree, one session at a time, and the sealer's loop keeps doing so until it stops, or
gives up for good when the index cannot be merged (here: it is gone).
"""

from __future__ import annotations

import asyncio
import random
import secrets
from datetime import UTC, datetime

import asyncpg
import pytest
from prometheus_client import REGISTRY

from auditlog.pg import search_blocks
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
                merged = await search_blocks.merge_pending(conn)
                assert merged is not None and merged > 0
                assert await search_blocks.merge_pending(conn) == 0
                assert await _found(conn, 42) == 30  # read from the tree
                for row in rows[::7]:
                    keys = row[5]
                    assert isinstance(keys, list)
                    assert await _found(conn, keys[-1]) >= 1
            finally:
                await conn.close()

        asyncio.run(check())


def test_while_one_session_merges_another_skips_its_turn(services: Services) -> None:
    name = f"auditlog_merge_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:

        async def check() -> None:
            holder = await asyncpg.connect(url)
            other = await asyncpg.connect(url)
            try:
                await _write(other, _blocks(0, 5, random.Random(2)))
                async with holder.transaction():
                    await holder.execute(
                        "SELECT pg_advisory_xact_lock($1)", search_blocks.MERGE_LOCK_ID
                    )
                    assert await search_blocks.merge_pending(other) is None
                assert (await search_blocks.merge_pending(other) or 0) > 0
            finally:
                await holder.close()
                await other.close()

        asyncio.run(check())


def _merged_pages() -> float:
    return REGISTRY.get_sample_value("auditlog_sealer_search_merged_pages_total") or 0.0


def test_the_loop_merges_until_stopped_and_gives_up_when_the_index_is_gone(
    services: Services,
) -> None:
    name = f"auditlog_merge_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:

        async def check() -> None:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            assert pool is not None
            try:
                async with pool.acquire() as conn:
                    await _write(conn, _blocks(0, 10, random.Random(3)))
                before = _merged_pages()
                stopping = asyncio.Event()
                loop = asyncio.create_task(merge_loop(pool, 0.05, stopping))
                for _ in range(600):  # 30 s at most
                    if _merged_pages() > before:
                        break
                    await asyncio.sleep(0.05)
                assert _merged_pages() > before
                assert await search_blocks.merge_pending(pool) == 0
                stopping.set()
                async with asyncio.timeout(5):
                    await loop

                # An index that cannot be merged ends the loop by itself (the sealer goes on).
                await pool.execute("DROP INDEX search_blocks_keys")
                async with asyncio.timeout(5):
                    await merge_loop(pool, 0.05, asyncio.Event())
            finally:
                await pool.close()

        asyncio.run(check())
