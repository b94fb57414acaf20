"""The search blocks' generations on a real PostgreSQL (migration 0011,
auditlog/pg/search_generations.py): blocks land in the newest generation, a new one opens when
the logs have grown enough, searches and merges reach every generation they must, and a database
migrated from schema 10 keeps its blocks as generation 0.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from auditlog.core.search_query import parse_query
from auditlog.pg import db, search_blocks, search_generations
from query.search_sql import Filter, SqlParams, block_predicate, blocks_probe, select_matching
from sealer.index_merge import merge_loop
from tests.conftest import Services, connected, insert_event, scratch_database

pytestmark = pytest.mark.integration

LOG = "audit.gen-0"
AT = datetime(2030, 2, 1, tzinfo=UTC)
ANY_TIME = Filter()


async def _seal_like(conn: asyncpg.Connection, first: int, count: int, *, blocks: bool) -> None:
    """Events ``first ..`` of LOG, each naming its own user, with the blocks a sealer writes for
    them (through ``search_blocks``' default generation)."""
    rows = []
    for idx in range(first, first + count):
        received = AT + timedelta(seconds=idx)
        message = f"key rotated by user{idx} today"
        await insert_event(conn, LOG, idx, received, message)
        rows.append((idx, received, None, None, None, None, None, None, message, None, None))
    if blocks:
        await search_blocks.copy_blocks(conn, search_blocks.block_rows(LOG, rows))


async def _search(
    conn: asyncpg.Connection, query: str, flt: Filter = ANY_TIME, *, narrowed: bool = True
) -> list[int]:
    # Whether the blocks narrow the search (whole tokens) or every event is read.
    assert (block_predicate(parse_query(query), SqlParams()) is not None) == narrowed
    generations = None if flt is ANY_TIME else await _overlap(conn, flt)
    params = SqlParams(first=2)
    sql = select_matching(
        parse_query(query), flt, params, logs="$1", columns="e.idx", generations=generations
    )
    return [r["idx"] for r in await conn.fetch(sql, [LOG], *params.values)]


async def _overlap(conn: asyncpg.Connection, flt: Filter) -> search_generations.Overlap:
    return await search_generations.overlapping(conn, flt.start, flt.end)


async def _per_generation(conn: asyncpg.Connection) -> list[tuple[int, int, int]]:
    rows = await conn.fetch(
        "SELECT generation, min(first_idx), max(last_idx) FROM search_blocks"
        " GROUP BY generation ORDER BY generation"
    )
    return [(r[0], r[1], r[2]) for r in rows]


def test_blocks_land_in_the_newest_generation_and_searches_read_every_one(
    services: Services,
) -> None:
    with scratch_database(services.database_url, f"gens_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            async with connected(url) as conn:
                await _seal_like(conn, 0, 100, blocks=True)
                assert await search_generations.open_next(conn, entries=100) == 1
                await _seal_like(conn, 100, 100, blocks=True)
                assert await search_generations.open_next(conn) == 2
                # Blocks go where the newest generation was when they were written, the
                # partial block 64..99 of generation 0 continuing as 100..127 in generation 1.
                assert await _per_generation(conn) == [(0, 0, 99), (1, 100, 199)]
                assert [g.number for g in await search_generations.generations(conn)] == [0, 1, 2]
                assert [g.entries_at_open for g in await search_generations.generations(conn)] == [
                    0,
                    100,
                    0,  # no log in this database's logs table
                ]
                # A whole token of both generations, of one, a value the blocks cannot narrow.
                assert await _search(conn, 'message:"key rotated by"') == list(range(200))
                assert await _search(conn, 'message:"by user7 today"') == [7]
                assert await _search(conn, 'message:"by user150 today"') == [150]
                found = await _search(conn, "message:ser15", narrowed=False)
                assert found == [15, *range(150, 160)]
                # Every generation's index is merged while it may take writes: the two newest.
                await _seal_like(conn, 200, 10, blocks=True)
                assert await search_blocks.merge_pending(conn) > 0
                assert await search_blocks.merge_pending(conn) == 0
                assert await _search(conn, 'message:"by user205 today"') == [205]

        asyncio.run(check())


async def _grow(conn: search_generations.Conn, size: int) -> None:
    """Say that LOG holds ``size`` entries (what the roll counts)."""
    await conn.execute(
        "INSERT INTO logs (log_id, origin, topic, kafka_partition, hash_scheme, root, size)"
        " VALUES ($1, $1, 'audit', 0, 'rfc6962-sha256', '\\x00', $2)"
        " ON CONFLICT (log_id) DO UPDATE SET size = excluded.size",
        LOG,
        size,
    )


def test_a_generation_opens_once_the_logs_grew_by_its_entries(services: Services) -> None:
    with scratch_database(services.database_url, f"gens_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            async with connected(url) as conn:
                assert await search_generations.roll(conn, 100) is None  # nothing sealed
                await _grow(conn, 99)
                assert await search_generations.roll(conn, 100) is None
                await _grow(conn, 150)
                assert await search_generations.roll(conn, 100) == 1
                assert await search_generations.roll(conn, 100) is None  # counts from 150 now
                await _grow(conn, 249)
                assert await search_generations.roll(conn, 100) is None
                await _grow(conn, 250)
                assert await search_generations.roll(conn, 100) == 2
                assert await search_generations.roll(conn, 0) is None  # 0: never
                opened = await search_generations.generations(conn)
                assert [(g.number, g.entries_at_open) for g in opened] == [
                    (0, 0),
                    (1, 150),
                    (2, 250),
                ]
                # Each generation is a partition with its own key index and primary key.
                indexes = await conn.fetch(
                    "SELECT indexrelid::regclass::text AS name FROM pg_index"
                    " WHERE indrelid = 'search_blocks_g2'::regclass ORDER BY 1"
                )
                assert [r["name"] for r in indexes] == [
                    "search_blocks_g2_keys",
                    "search_blocks_g2_pkey",
                ]

        asyncio.run(check())


def _opened() -> float:
    return REGISTRY.get_sample_value("auditlog_sealer_search_generations_opened_total") or 0.0


async def _until_opened(count: float) -> None:
    for _ in range(600):  # 30 s at most
        if _opened() >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the loop had opened {_opened()} generations after 30 s, not {count}")


def test_the_merging_sealer_opens_generations_even_with_merges_off(services: Services) -> None:
    with scratch_database(services.database_url, f"gens_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            assert pool is not None
            try:
                async with pool.acquire() as conn:
                    await _grow(conn, 20_000)
                before = _opened()
                stopping = asyncio.Event()
                # Merging off (interval 0): turns every second, opening generations only.
                loop = asyncio.create_task(merge_loop(pool, 0, stopping, generation_entries=10_000))
                await _until_opened(before + 1)
                async with pool.acquire() as conn:
                    await _grow(conn, 30_000)
                await _until_opened(before + 2)
                stopping.set()
                async with asyncio.timeout(5):
                    await loop
                async with pool.acquire() as conn:
                    opened = await search_generations.generations(conn)
                assert [(g.number, g.entries_at_open) for g in opened] == [
                    (0, 0),
                    (1, 20_000),
                    (2, 30_000),
                ]
                stopped = ("auditlog_sealer_search_upkeep_stopped", {"part": "generations"})
                assert REGISTRY.get_sample_value(*stopped) == 0
                # Generations that cannot be opened (here: their table is gone) end the loop
                # by itself, merges being off, and say so on /metrics for the alert.
                await pool.execute("DROP TABLE search_generations")
                async with asyncio.timeout(5):
                    await merge_loop(pool, 0, asyncio.Event(), generation_entries=10_000)
                assert REGISTRY.get_sample_value(*stopped) == 1
            finally:
                await pool.close()

        asyncio.run(check())


def test_blocks_written_before_migration_11_become_generation_0(services: Services) -> None:
    with scratch_database(
        services.database_url, f"gens_{secrets.token_hex(4)}", migrated_to=10
    ) as url:

        async def check() -> None:
            async with connected(url) as conn:
                await _seal_like(conn, 0, 70, blocks=False)
                rows = await conn.fetch(
                    "SELECT idx, received_at, tenant_id, actor, action, target, status, source,"
                    " message, new_value, old_value FROM events ORDER BY idx"
                )
                # Schema 10's table has no generation column.
                await conn.copy_records_to_table(
                    "search_blocks",
                    records=search_blocks.block_rows(LOG, [tuple(r) for r in rows]),
                    columns=list(search_blocks.BLOCK_COLUMNS),
                )
                await db.migrate(conn)
                assert await _per_generation(conn) == [(0, 0, 69)]
                assert await _search(conn, 'message:"by user66 today"') == [66]
                # Within a generation a block is still written once.
                with pytest.raises(asyncpg.UniqueViolationError):
                    await search_blocks.copy_blocks(
                        conn, search_blocks.block_rows(LOG, [tuple(rows[0])])
                    )
                await search_generations.open_next(conn)
                await _seal_like(conn, 70, 5, blocks=True)
                assert await _per_generation(conn) == [(0, 0, 69), (1, 70, 74)]
                assert await _search(conn, 'message:"key rotated by"') == list(range(75))

        asyncio.run(check())


def test_generations_left_empty_are_dropped_but_never_the_two_newest(services: Services) -> None:
    with scratch_database(services.database_url, f"gens_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            async with connected(url) as conn:
                await _seal_like(conn, 0, 64, blocks=True)
                await search_generations.open_next(conn)
                await _seal_like(conn, 64, 64, blocks=True)
                await search_generations.open_next(conn)
                await search_generations.open_next(conn)
                assert await search_generations.drop_empty(conn) == []  # 0 and 1 hold blocks
                # What retention does to the blocks of pruned entries.
                await conn.execute("DELETE FROM search_blocks WHERE last_idx < 64")
                assert await search_generations.drop_empty(conn) == [0]
                assert [g.number for g in await search_generations.generations(conn)] == [1, 2, 3]
                assert await conn.fetchval("SELECT to_regclass('search_blocks_g0')") is None
                assert await _search(conn, 'message:"key rotated by"') == list(range(64, 128))
                # The newest two stay though empty: seals write into them.
                await conn.execute("DELETE FROM search_blocks")
                assert await search_generations.drop_empty(conn) == [1]
                await _seal_like(conn, 128, 3, blocks=True)
                assert await _per_generation(conn) == [(3, 128, 130)]

        asyncio.run(check())


def test_a_search_with_a_time_range_probes_the_generations_overlapping_it(
    services: Services,
) -> None:
    with scratch_database(services.database_url, f"gens_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            async with connected(url) as conn:
                for first in (0, 64, 128):  # generations 0, 1, 2 (event i received at AT + i s)
                    await _seal_like(conn, first, 64, blocks=True)
                    await search_generations.open_next(conn)
                await _seal_like(conn, 192, 8, blocks=True)  # generation 3, the newest
                # Only generations no longer among the two newest get a span.
                assert await search_generations.bound_closed(conn) == [0, 1]
                assert await search_generations.bound_closed(conn) == []
                spans = await conn.fetch(
                    "SELECT generation, first_at, last_at FROM search_generations"
                    " ORDER BY generation"
                )
                assert [(r[0], r[1], r[2]) for r in spans] == [
                    (0, AT, AT + timedelta(seconds=63)),
                    (1, AT + timedelta(seconds=64), AT + timedelta(seconds=127)),
                    (2, None, None),
                    (3, None, None),
                ]
                query = 'message:"key rotated by"'
                for low, high in ((10, 12), (60, 70), (100, 101), (120, 195), (190, 199)):
                    window = Filter(AT + timedelta(seconds=low), AT + timedelta(seconds=high))
                    found = await _search(conn, query, window)
                    assert found == list(range(low, high + 1))
                    params = SqlParams(first=2)
                    probe = blocks_probe(
                        parse_query(query),
                        params,
                        logs="$1",
                        cap="1000",
                        flt=window,
                        generations=await _overlap(conn, window),
                    )
                    assert probe is not None
                    blocks = await conn.fetchval(probe, [LOG], *params.values)
                    assert blocks == len({i // 64 for i in range(low, high + 1)})
                after = Filter(start=AT + timedelta(seconds=130))
                assert await _overlap(conn, after) == search_generations.Overlap(None, None, 2, 0)
                assert await _search(conn, query, after) == list(range(130, 200))
                before = Filter(end=AT + timedelta(seconds=5))
                assert await _overlap(conn, before) == search_generations.Overlap(0, 0, 2, 0)
                assert await _search(conn, query, before) == list(range(6))
                # The generations outside the range are left out of the plan.
                window = Filter(AT + timedelta(seconds=10), AT + timedelta(seconds=12))
                params = SqlParams(first=2)
                sql = select_matching(
                    parse_query(query),
                    window,
                    params,
                    logs="$1",
                    generations=await _overlap(conn, window),
                )
                explained = await conn.fetch(f"EXPLAIN {sql}", [LOG], *params.values)
                plan = "\n".join(r[0] for r in explained)
                for generation in (0, 2, 3):
                    assert f"on search_blocks_g{generation} " in plan, plan
                assert "search_blocks_g1 " not in plan, plan
                # A closed generation left empty gets a span that no range overlaps.
                await search_generations.open_next(conn)
                await search_generations.open_next(conn)  # 4 and 5: 2 and 3 are closed now
                assert await search_generations.bound_closed(conn) == [2, 3]
                await search_generations.open_next(conn)
                await search_generations.open_next(conn)
                assert await search_generations.bound_closed(conn) == [4, 5]
                assert await conn.fetchval(
                    "SELECT first_at = 'infinity' AND last_at = '-infinity'"
                    " FROM search_generations WHERE generation = 4"
                )

        asyncio.run(check())


def test_a_seal_waiting_on_the_upgrade_to_schema_11_lands_in_generation_0(
    services: Services,
) -> None:
    """A sealer of the version before keeps sealing through the upgrade: its blocks' COPY waits
    for migration 0011's lock, and its statement's snapshot, taken before the migration
    committed, sees no generation yet; the default still finds generation 0."""
    with scratch_database(
        services.database_url, f"gens_{secrets.token_hex(4)}", migrated_to=10
    ) as url:

        async def check() -> None:
            [sql] = [sql for version, _, sql in db.migrations() if version == 11]
            async with connected(url) as migrating, connected(url) as sealing:
                row = (LOG, 0, 63, AT, AT, [1, 2, 3])
                async with migrating.transaction():
                    await migrating.execute(sql)
                    seal = asyncio.create_task(search_blocks.copy_blocks(sealing, [row]))
                    for _ in range(200):  # until the seal waits for the migration's lock
                        waiting = await migrating.fetchval(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                        if waiting:
                            break
                        await asyncio.sleep(0.01)
                    assert waiting == 1
                async with asyncio.timeout(10):
                    await seal
                assert await _per_generation(migrating) == [(0, 0, 63)]

        asyncio.run(check())
