"""Dropping and rebuilding the event-hash index; receipts' lookups by hash with and without it.

Runs in a scratch database of its own (migrated, so the index exists as migration 0001 made
it), with events in the default partition and in a month split by log.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from unittest import mock

import asyncpg
import pytest

from auditlog.pg import hash_index
from query import hashes
from query.hashes import _BY_HASH_AT, HashIndexProbe, find_by_hash
from query.search_months import event_months
from query.search_sql import Filter
from sealer.store import Partitions, partition_name
from sealer.timestamps import micros
from tests.conftest import Services, scratch_database

pytestmark = pytest.mark.integration

# (received_at, tenant_id): one in the default partition (an old producer timestamp), three in
# November 2026, two of them at the same microsecond.
EVENTS = [
    (datetime(1999, 1, 1, tzinfo=UTC), None),
    (datetime(2026, 11, 2, tzinfo=UTC), "hospital"),
    (datetime(2026, 11, 3, tzinfo=UTC), None),
    (datetime(2026, 11, 3, tzinfo=UTC), "clinic"),
]
LOG = "h-0"
LEAVES = [
    "events_default",
    partition_name(2026, 11, LOG),
    "events_2026_11_default",
    partition_name(2026, 12, LOG),
    "events_2026_12_default",
]


def _hash(idx: int) -> bytes:
    return hashlib.sha256(f"event {idx}".encode()).digest()


@pytest.fixture
def database(services: Services) -> Iterator[str]:
    with scratch_database(services.database_url, f"hash_index_{secrets.token_hex(4)}") as url:
        asyncio.run(_insert(url))
        yield url


@asynccontextmanager
async def _connect(url: str) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Connection]]:
    """A pool for the lookups, as the query service has, and a connection for the index."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    conn = await asyncpg.connect(url)
    try:
        yield pool, conn
    finally:
        await conn.close()
        await pool.close()


async def _insert(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await Partitions().ensure(conn, LOG, [micros(received) for received, _ in EVENTS[1:]])
        for idx, (received, tenant) in enumerate(EVENTS):
            await conn.execute(
                "INSERT INTO events (log_id, idx, event_hash, envelope, received_at, kafka_offset,"
                " tenant_id) VALUES ($1, $2, $3, $4, $5, $2, $6)",
                LOG, idx, _hash(idx), b"{}", received, tenant,
            )  # fmt: skip
    finally:
        await conn.close()


async def _found(pool: asyncpg.Pool, *, by_time: bool) -> list[int | None]:
    """Each event looked up by its hash (and its own tenant): the index found, or None."""
    found = []
    for idx, (received, tenant) in enumerate(EVENTS):
        row = await find_by_hash(pool, _hash(idx), tenant, received if by_time else None)
        found.append(None if row is None else row["idx"])
    return found


async def _covered(conn: asyncpg.Connection) -> dict[str, bool]:
    """Partition (at any depth) -> whether it has an index in the hash index's tree."""
    rows = await conn.fetch(
        "SELECT c.relname, EXISTS ("
        "   SELECT FROM pg_partition_tree(to_regclass('events_event_hash')) i"
        "   JOIN pg_index x ON x.indexrelid = i.relid WHERE x.indrelid = t.relid) AS ok"
        " FROM pg_partition_tree('events') t JOIN pg_class c ON c.oid = t.relid"
        " WHERE t.level > 0"
    )
    return {r["relname"]: r["ok"] for r in rows}


def test_lookups_by_hash_with_the_index_without_it_and_after_rebuilding_it(database: str) -> None:
    async def run() -> None:
        everything = list(range(len(EVENTS)))
        async with _connect(database) as (pool, conn):
            probe = HashIndexProbe(pool, ttl=0.0)
            assert await hash_index.state(conn) == "hash"
            assert await probe.available()
            assert await _found(pool, by_time=False) == everything
            assert await _found(pool, by_time=True) == everything
            # The time is part of the lookup, and so is the tenant.
            moved = EVENTS[1][0] + timedelta(microseconds=1)
            assert await find_by_hash(pool, _hash(1), None, moved) is None
            assert await find_by_hash(pool, _hash(3), "hospital", EVENTS[3][0]) is None

            await hash_index.drop(conn)
            assert await hash_index.state(conn) == "none"
            assert not await probe.available()
            assert set((await _covered(conn)).values()) == {False}
            # By time it needs no hash index, and reads no table to find the event.
            assert await _found(pool, by_time=True) == everything
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_seqscan = off")
                plan = await conn.fetchval(
                    f"EXPLAIN (FORMAT JSON) {_BY_HASH_AT}", _hash(2), None, EVENTS[2][0]
                )
            assert "Seq Scan" not in str(plan)
            await hash_index.drop(conn)  # idempotent
            assert await hash_index.state(conn) == "none"

            built: list[str] = []
            await hash_index.create(conn, built.append)
            assert await hash_index.state(conn) == "hash"
            assert await probe.available()
            covered = await _covered(conn)
            assert set(covered) >= set(LEAVES)
            assert all(covered.values()), covered
            assert sorted(built) == sorted(f"building {leaf}_event_hash" for leaf in LEAVES)
            assert await _found(pool, by_time=False) == everything
            built.clear()
            await hash_index.create(conn, built.append)  # nothing left to build
            assert built == []

    asyncio.run(run())


def test_the_probe_reads_the_index_state_again_only_after_its_ttl(database: str) -> None:
    async def run() -> None:
        now = [0.0]
        async with _connect(database) as (pool, conn):
            probe = HashIndexProbe(pool, ttl=10.0, clock=lambda: now[0])
            assert await probe.available()
            await hash_index.drop(conn)
            now[0] = 9.9
            assert await probe.available()  # what it read at 0.0
            now[0] = 10.0
            assert not await probe.available()

    asyncio.run(run())


def test_an_interrupted_build_is_incomplete_and_not_used(database: str) -> None:
    async def run() -> None:
        async with _connect(database) as (pool, conn):
            probe = HashIndexProbe(pool, ttl=0.0)
            await hash_index.drop(conn)
            # What a build leaves when stopped after declaring the parent index.
            await conn.execute(
                f"CREATE INDEX {hash_index.INDEX} ON ONLY events USING hash (event_hash)"
            )
            assert await hash_index.state(conn) == "incomplete"
            assert not await probe.available()
            await hash_index.create(conn, lambda _: None)
            assert await hash_index.state(conn) == "hash"
            assert await probe.available()

    asyncio.run(run())


def test_the_command_reports_drops_and_builds_it(database: str) -> None:
    def command(action: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "auditlog.cli", "hash-index", action,
             "--database-url", database],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert command("status") == "hash index: hash"
    assert command("drop") == "hash index: none"
    assert command("status") == "hash index: none"
    assert command("create") == "hash index: hash"


# Months apart, in two logs, nothing in the default partition: a lookup by hash alone walks the
# months, newest first. Events 3 and 4 have one envelope (one hash) in two logs.
WALKED = [
    ("w-0", datetime(2026, 9, 5, tzinfo=UTC), "hospital", 0),
    ("w-1", datetime(2026, 10, 5, tzinfo=UTC), None, 1),
    ("w-0", datetime(2026, 11, 5, tzinfo=UTC), "clinic", 2),
    ("w-1", datetime(2026, 11, 6, tzinfo=UTC), None, 3),
    ("w-0", datetime(2026, 11, 6, tzinfo=UTC), None, 3),
]


def test_a_lookup_by_hash_alone_reads_a_month_at_a_time_newest_first(services: Services) -> None:
    async def run(url: str) -> None:
        async with _connect(url) as (pool, conn):
            for log in ("w-0", "w-1"):
                await Partitions().ensure(conn, log, [micros(at) for _, at, _, _ in WALKED])
            for idx, (log, received, tenant, event) in enumerate(WALKED):
                await conn.execute(
                    "INSERT INTO events (log_id, idx, event_hash, envelope, received_at,"
                    " kafka_offset, tenant_id) VALUES ($1, $2, $3, $4, $5, $2, $6)",
                    log, idx, _hash(event), b"{}", received, tenant,
                )  # fmt: skip

            async def found(event: int, tenant: str | None) -> tuple[str, int] | None:
                row = await find_by_hash(pool, _hash(event), tenant, None)
                return None if row is None else (row["log_id"], row["idx"])

            assert await found(0, None) == ("w-0", 0)  # the oldest month, reached last
            assert await found(0, "hospital") == ("w-0", 0)
            assert await found(0, "clinic") is None  # the tenant is part of the lookup
            assert await found(1, None) == ("w-1", 1)
            assert await found(2, "clinic") == ("w-0", 2)
            # One hash in two logs: the first log in byte order, as one statement answers.
            assert await found(3, None) == ("w-0", 4)
            assert await found(9, None) is None

            # The newest month's event is found without touching older months: a lookup that
            # planned every leaf would wait for this lock.
            blocker = await asyncpg.connect(url)
            try:
                async with blocker.transaction():
                    await blocker.execute(
                        f'LOCK TABLE "{partition_name(2026, 9, "w-0")}" IN ACCESS EXCLUSIVE MODE'
                    )
                    assert await asyncio.wait_for(found(2, None), 10) == ("w-0", 2)
            finally:
                await blocker.close()

            # A month dropped by retention is no longer read, and one listed by the catalog
            # but dropped before its statement runs is passed over.
            await conn.execute("DROP TABLE events_2026_09")
            assert await found(0, None) is None
            assert await found(1, None) == ("w-1", 1)
            gone = (datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC))
            months = await event_months(conn, Filter())
            assert months is not None
            with mock.patch.object(hashes, "event_months", return_value=[gone, *months]):
                assert await found(1, None) == ("w-1", 1)
                assert await found(9, None) is None

    with scratch_database(services.database_url, f"hash_walk_{secrets.token_hex(4)}") as url:
        asyncio.run(run(url))
