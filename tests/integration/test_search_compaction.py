"""Compacting closed generations of the search blocks on a real PostgreSQL
(auditlog/pg/search_compaction.py): fewer generations, the same answers, blocks removed while
the copy was made left out of it, and a compaction that cannot swap leaving everything as it was.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from datetime import timedelta

import asyncpg
import pytest

from auditlog.core.search_query import parse_query
from auditlog.pg import search_blocks, search_compaction, search_generations
from query.search_sql import Filter, SqlParams, select_matching
from tests.conftest import Services, connected, scratch_database
from tests.integration.test_search_generations import AT, LOG, _seal_like, _search

pytestmark = pytest.mark.integration

QUERIES = ('message:"key rotated by"', 'message:"by user70 today"', "message:ser1")
WINDOWS = [
    Filter(),
    Filter(AT + timedelta(seconds=10), AT + timedelta(seconds=12)),
    Filter(AT + timedelta(seconds=60), AT + timedelta(seconds=200)),
    Filter(start=AT + timedelta(seconds=250)),
]


async def _six_generations(conn: asyncpg.Connection) -> None:
    """Generations 0-3 of 64 entries each, 4 with 8, 5 empty: 0-3 closed."""
    for first in (0, 64, 128, 192, 256):
        await _seal_like(conn, first, 64 if first < 256 else 8, blocks=True)
        await search_generations.open_next(conn)


async def _answers(conn: asyncpg.Connection) -> list[list[int]]:
    return [
        await _search(conn, query, window, narrowed=query != "message:ser1")
        for query in QUERIES
        for window in WINDOWS
    ]


async def _partitions(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'search_blocks'::regclass ORDER BY c.relname"
    )
    return {r["relname"]: r["bound"] for r in rows}


def test_closed_generations_become_one_and_answers_stay(services: Services) -> None:
    with scratch_database(services.database_url, f"compact_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            async with connected(url) as conn:
                await _six_generations(conn)
                before = await _answers(conn)
                assert before[0] == list(range(264)) and before[4] == [70]
                closed = await search_compaction.closed_generations(conn)
                assert closed == [search_compaction.Closed(n, 1, 64) for n in range(4)]
                done = await search_compaction.compact(conn, 128)
                assert [(c.numbers, c.blocks, c.entries) for c in done] == [
                    ((0, 1), 2, 128),
                    ((2, 3), 2, 128),
                ]
                assert await _partitions(conn) == {
                    "search_blocks_g0": "FOR VALUES FROM (0) TO (2)",
                    "search_blocks_g2": "FOR VALUES FROM (2) TO (4)",
                    "search_blocks_g4": "FOR VALUES FROM (4) TO (5)",
                    "search_blocks_g5": "FOR VALUES FROM (5) TO (6)",
                }
                assert [g.number for g in await search_generations.generations(conn)] == [
                    0, 2, 4, 5,
                ]  # fmt: skip
                spans = await conn.fetch(
                    "SELECT generation, first_at, last_at FROM search_generations"
                    " WHERE generation < 4 ORDER BY generation"
                )
                assert [tuple(r) for r in spans] == [
                    (0, AT, AT + timedelta(seconds=127)),
                    (2, AT + timedelta(seconds=128), AT + timedelta(seconds=255)),
                ]
                assert await _answers(conn) == before
                # The compacted table has the key and the key index a generation has.
                indexes = await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'search_blocks_g0'"
                    " ORDER BY indexname"
                )
                assert [r[0] for r in indexes] == ["search_blocks_g0_keys", "search_blocks_g0_pkey"]
                # A search with a time range still plans only the generations overlapping it.
                window = WINDOWS[1]
                params = SqlParams(first=2)
                sql = select_matching(
                    parse_query(QUERIES[0]),
                    window,
                    params,
                    logs="$1",
                    generations=await search_generations.overlapping(
                        conn, window.start, window.end
                    ),
                )
                plan = "\n".join(
                    r[0] for r in await conn.fetch(f"EXPLAIN {sql}", [LOG], *params.values)
                )
                assert "on search_blocks_g0 " in plan and "search_blocks_g2 " not in plan, plan
                # Again with room for all: one closed generation; nothing left to do after.
                done = await search_compaction.compact(conn, 10_000)
                assert [c.numbers for c in done] == [(0, 2)]
                assert (await _partitions(conn))["search_blocks_g0"] == (
                    "FOR VALUES FROM (0) TO (4)"
                )
                assert await search_compaction.compact(conn, 10_000) == []
                assert await _answers(conn) == before
                # Seals, merges, retention's drop and new generations go on as before.
                await _seal_like(conn, 264, 10, blocks=True)
                assert await search_blocks.merge_pending(conn) > 0
                assert await _search(conn, 'message:"by user270 today"') == [270]
                await conn.execute("DELETE FROM search_blocks WHERE last_idx < 256")
                await search_generations.open_next(conn)
                assert await search_generations.drop_empty(conn) == [0]

        asyncio.run(check())


async def _waiting_for_access_exclusive(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted"
            " AND mode = 'AccessExclusiveLock' AND relation = 'search_blocks'::regclass)"
        )
    )


def test_blocks_moved_while_the_copy_was_made_are_left_out(services: Services) -> None:
    with scratch_database(services.database_url, f"compact_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            async with connected(url) as conn, connected(url) as search, connected(url) as other:
                await _six_generations(conn)
                before = await _answers(conn)
                await search_generations.bound_closed(conn)
                # A long search holds search_blocks: the compaction copies, then waits to swap.
                blocker = search.transaction()
                await blocker.start()
                await search.fetchval("SELECT count(*) FROM search_blocks")
                task = asyncio.create_task(
                    search_compaction.compact_run(conn, (0, 1, 2), attempts=40)
                )
                for _ in range(200):
                    if await _waiting_for_access_exclusive(other):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the compaction never asked for the swap's lock")
                # What erasure does to a block of generation 1: out of it, into the newest.
                rows = await other.fetch(
                    "DELETE FROM search_blocks WHERE log_id = $1 AND first_idx = 64"
                    " RETURNING log_id, first_idx, last_idx, first_at, last_at, keys",
                    LOG,
                )
                assert len(rows) == 1
                await other.copy_records_to_table(
                    "search_blocks",
                    records=[tuple(rows[0])],
                    columns=["log_id", "first_idx", "last_idx", "first_at", "last_at", "keys"],
                )
                await blocker.rollback()
                done = await task
                assert (done.numbers, done.blocks, done.entries) == ((0, 1, 2), 2, 128)
                assert done.swap_attempts > 1
                placed = await conn.fetch(
                    "SELECT generation FROM search_blocks WHERE log_id = $1 AND first_idx = 64",
                    LOG,
                )
                assert [r[0] for r in placed] == [5]
                assert await _answers(conn) == before

        asyncio.run(check())


def test_a_compaction_that_cannot_swap_changes_nothing(services: Services) -> None:
    with scratch_database(services.database_url, f"compact_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            async with connected(url) as conn, connected(url) as search:
                await _six_generations(conn)
                await search_generations.bound_closed(conn)
                partitions = await _partitions(conn)
                async with search.transaction():
                    await search.fetchval("SELECT count(*) FROM search_blocks")
                    with pytest.raises(search_compaction.CompactionError, match="2 tries"):
                        await search_compaction.compact_run(conn, (0, 1), attempts=2)
                assert await _partitions(conn) == partitions
                assert await conn.fetchval("SELECT to_regclass('search_blocks_compacting')") is None
                assert [g.number for g in await search_generations.generations(conn)] == [*range(6)]
                # Neither the newest two nor a run that is not what is there are rewritten.
                for run in ((3, 4), (0, 2), (1, 7)):
                    with pytest.raises(search_compaction.CompactionError, match="changed"):
                        await search_compaction.compact_run(conn, run, attempts=1)
                assert await _partitions(conn) == partitions

        asyncio.run(check())


def test_the_compact_command(services: Services) -> None:
    with scratch_database(services.database_url, f"compact_{secrets.token_hex(4)}") as url:

        async def setup() -> None:
            async with connected(url) as conn:
                await _six_generations(conn)

        asyncio.run(setup())
        env = {**os.environ, "AUDITLOG_DATABASE_URL": url}
        command = [sys.executable, "-m", "auditlog.cli", "search-index", "compact"]

        def compact(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*command, *extra], env=env, capture_output=True, text=True, timeout=60, check=False
            )

        run = compact("--entries", "192")
        assert run.returncode == 0, run.stderr
        assert "search blocks: generations 0-2 are now generation 0: 3 blocks of 192 entries" in (
            run.stdout
        )
        again = compact()
        assert again.returncode == 0, again.stderr
        assert "generations 0-3 are now generation 0: 4 blocks of 256 entries" in again.stdout
        bad = compact("--entries", "0")
        assert bad.returncode == 2 and "must be 1 or more" in bad.stderr

        def status() -> str:
            run = subprocess.run(
                [sys.executable, "-m", "auditlog.cli", "search-index", "status"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            return run.stdout

        assert "closed generations" not in status()

        async def open_more() -> None:
            async with connected(url) as conn:
                for _ in range(16):
                    await search_generations.open_next(conn)

        asyncio.run(open_more())
        assert "search blocks: 17 closed generations, each probed by every search" in status()
        compact()
        assert "closed generations" not in status()
