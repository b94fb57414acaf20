"""Building and dropping the optional trigram index: same answers, and every partition covered.

Runs in a scratch database of its own (migrated: since migration 0007 without the index), with
events in the default partition and in a monthly one.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import pytest

from auditlog.core.search_query import parse_query
from auditlog.pg import search_index
from query.search_sql import Filter, SqlParams, compile_filter
from sealer.store import Partitions, partition_name
from sealer.timestamps import micros
from tests.conftest import Services, connected, scratch_database

pytestmark = pytest.mark.integration

# One event in the default partition (a producer's old timestamp), two in November 2026.
EVENTS = [
    (datetime(1999, 1, 1, tzinfo=UTC), "alice@example.com", "login from 10.0.0.7"),
    (datetime(2026, 11, 2, tzinfo=UTC), "bob@example.com", "export of report-4711"),
    (datetime(2026, 11, 3, tzinfo=UTC), "carol@example.com", "login from 10.0.0.9"),
]
LOG = "t-0"
# November is split by log: LOG's leaf, and the month's default leaf for any other log;
# December, the month after, is made ahead the same way.
NOVEMBER = [partition_name(2026, 11, LOG), "events_2026_11_default"]
LEAVES = ["events_default", *NOVEMBER, partition_name(2026, 12, LOG), "events_2026_12_default"]
QUERIES = {
    "message:login": {0, 2},
    "actor:bob@exa": {1},
    "report-4711": {1},
    "10.0.0": {0, 2},
    "-message:login": {1},
}


@pytest.fixture
def database(services: Services) -> Iterator[str]:
    with scratch_database(services.database_url, f"search_index_{secrets.token_hex(4)}") as url:
        asyncio.run(_insert(url))
        yield url


async def _insert(url: str) -> None:
    async with connected(url) as conn:
        # November's partition only: the 1999 event lands in the default partition.
        await Partitions().ensure(conn, LOG, [micros(received) for received, _, _ in EVENTS[1:]])
        for idx, (received, actor, message) in enumerate(EVENTS):
            await conn.execute(
                "INSERT INTO events (log_id, idx, event_hash, envelope, received_at, kafka_offset,"
                " actor, message) VALUES ($7, $1, $2, $3, $4, $1, $5, $6)",
                idx,
                hashlib.sha256(message.encode()).digest(),
                message.encode(),
                received,
                actor,
                message,
                LOG,
            )


async def _search(conn: asyncpg.Connection, query: str) -> set[int]:
    params = SqlParams()
    where = compile_filter(parse_query(query), Filter(), params)
    rows = await conn.fetch(f"SELECT idx FROM events WHERE {where}", *params.values)
    return {r["idx"] for r in rows}


async def _covered(conn: asyncpg.Connection) -> dict[str, bool]:
    """Partition (at any depth) -> whether it has an index in the search-text index's tree."""
    rows = await conn.fetch(
        "SELECT c.relname, EXISTS ("
        "   SELECT FROM pg_partition_tree(to_regclass('events_search_text')) i"
        "   JOIN pg_index x ON x.indexrelid = i.relid WHERE x.indrelid = t.relid) AS ok"
        " FROM pg_partition_tree('events') t JOIN pg_class c ON c.oid = t.relid"
        " WHERE t.level > 0"
    )
    return {r["relname"]: r["ok"] for r in rows}


async def _indexes(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%search\\_text%'"
    )
    return {r["indexname"] for r in rows}


async def _uses_index(conn: asyncpg.Connection, query: str) -> bool:
    params = SqlParams()
    where = compile_filter(parse_query(query), Filter(), params)
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) SELECT idx FROM events WHERE {where}", *params.values
        )
    return "search_text" in str(plan)


def test_search_answers_the_same_without_the_index_and_after_rebuilding_it(database: str) -> None:
    async def run() -> None:
        async with connected(database) as conn:
            assert await search_index.state(conn) == "none"
            await search_index.create(conn, lambda _: None)
            assert await search_index.state(conn) == "trigram"
            before = {q: await _search(conn, q) for q in QUERIES}
            assert before == QUERIES

            await search_index.drop(conn)
            assert await search_index.state(conn) == "none"
            assert await _indexes(conn) == set()
            assert {q: await _search(conn, q) for q in QUERIES} == QUERIES

            built: list[str] = []
            await search_index.create(conn, built.append)
            assert await search_index.state(conn) == "trigram"
            assert await _covered(conn) == dict.fromkeys(
                [*LEAVES, "events_2026_11", "events_2026_12"], True
            )
            assert sorted(built) == sorted(f"building {name}_search_text" for name in LEAVES)
            assert {q: await _search(conn, q) for q in QUERIES} == QUERIES
            assert await _uses_index(conn, "actor:bob@exa")

            await search_index.create(conn, built.append)  # nothing left to build
            assert len(built) == len(LEAVES)

    asyncio.run(run())


def test_an_interrupted_build_is_finished_by_the_next_one_or_dropped(database: str) -> None:
    async def run() -> None:
        method = f"gin (({search_index.SEARCH_TEXT}) gin_trgm_ops)"
        async with connected(database) as conn:
            await search_index.drop(conn)
            # As a build killed midway leaves it: the parent declared, one partition's index
            # built but never attached.
            await conn.execute(
                f"CREATE INDEX {search_index.INDEX} ON ONLY events USING gin"
                " ((coalesce(actor, '')) gin_trgm_ops)"
            )
            await conn.execute("CREATE INDEX events_default_search_text ON events_default (actor)")
            assert await search_index.state(conn) == "incomplete"
            # A partition created meanwhile gets its index from the parent, attached.
            await Partitions().ensure(conn, LOG, [micros(datetime(2027, 3, 5, tzinfo=UTC))])
            covered = await _covered(conn)
            assert covered["events_2027_03"]
            assert covered[partition_name(2027, 3, LOG)]

            await search_index.drop(conn)
            assert await search_index.state(conn) == "none"
            assert await _indexes(conn) == set()

            # Killed midway through a month split by log: the month's index declared on it
            # alone, one of its leaves built, neither attached. A drop removes both...
            month_index = f'"events_2026_11_search_text" ON ONLY events_2026_11 USING {method}'
            await conn.execute(f"CREATE INDEX {month_index}")
            await conn.execute(
                f'CREATE INDEX "{NOVEMBER[0]}_search_text" ON "{NOVEMBER[0]}" (actor)'
            )
            await search_index.drop(conn)
            assert await _indexes(conn) == set()
            # ...and a build takes over where it stopped.
            await conn.execute(f"CREATE INDEX {search_index.INDEX} ON ONLY events USING {method}")
            await conn.execute(f"CREATE INDEX {month_index}")
            await conn.execute("CREATE INDEX events_default_search_text ON events_default (actor)")
            await search_index.create(conn, lambda _: None)
            assert await search_index.state(conn) == "trigram"
            assert set((await _covered(conn)).values()) == {True}
            assert await _uses_index(conn, "report-4711")

    asyncio.run(run())
