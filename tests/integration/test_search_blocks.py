"""Entries sealed before the search blocks existed: found all along, then backfilled.

A scratch database is migrated to schema 6, given a log with events (as a deployment before
issue 29 has), then migrated to the latest: search must find the old events although they have
no blocks, and ``auditlog search-index backfill`` must write blocks equal to the sealer's.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from auditlog.core.search_query import parse_query
from auditlog.pg import db, search_blocks
from query.search_sql import Filter, SqlParams, select_matching
from tests.conftest import Services, scratch_database

pytestmark = pytest.mark.integration

LOG = "audit-0"
# 150 events: two whole blocks and part of a third, so the backfill meets a partial block.
EVENTS = [
    (f"user{i}@example.com", f"login {i} from 10.0.{i % 7}.{i}", "success" if i % 3 else "failure")
    for i in range(150)
]
BASE = datetime(2026, 12, 1, tzinfo=UTC)
QUERIES = {
    "actor=user42@example.com": {42},
    'message:" 10.0.3."': {i for i in range(150) if i % 7 == 3},
    "status=failure actor:@example.": {i for i in range(150) if i % 3 == 0},
    "message:ogin": set(range(150)),  # no whole token: every event is read
}


async def _setup(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO logs (log_id, origin, topic, kafka_partition, hash_scheme, size, root,"
            " next_offset) VALUES ($1, 'test/audit/0', 'audit', 0, 'sha256', $2, $3, $2)",
            LOG,
            len(EVENTS),
            bytes(32),
        )
        for idx, (actor, message, status) in enumerate(EVENTS):
            await conn.execute(
                "INSERT INTO events (log_id, idx, event_hash, envelope, received_at,"
                " kafka_offset, actor, message, status)"
                " VALUES ($1, $2, $3, $4, $5, $2, $6, $7, $8)",
                LOG,
                idx,
                hashlib.sha256(message.encode()).digest(),
                message.encode(),
                BASE + timedelta(seconds=idx),
                actor,
                message,
                status,
            )
        await db.migrate(conn)
    finally:
        await conn.close()


async def _found(conn: asyncpg.Connection) -> dict[str, set[int]]:
    out = {}
    for query in QUERIES:
        params = SqlParams(first=2)
        sql = select_matching(parse_query(query), Filter(), params, logs="$1")
        out[query] = {r["idx"] for r in await conn.fetch(sql, [LOG], *params.values)}
    return out


def test_old_entries_are_found_before_and_after_the_backfill(services: Services) -> None:
    name = f"auditlog_blocks_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name, migrated_to=6) as url:
        asyncio.run(_setup(url))

        async def before() -> None:
            conn = await asyncpg.connect(url)
            try:
                assert await search_blocks.uncovered(conn) == {LOG: len(EVENTS)}
                assert await _found(conn) == QUERIES
            finally:
                await conn.close()

        asyncio.run(before())
        env = {**os.environ, "AUDITLOG_DATABASE_URL": url}
        run = subprocess.run(
            [sys.executable, "-m", "auditlog.cli", "search-index", "backfill"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "search blocks: written for 150 entries" in run.stdout
        assert "search blocks: every entry" in run.stdout
        # Migrated past 0011: one generation, counting from nothing.
        assert "search blocks: 1 generation; the newest, 0, opened " in run.stdout
        assert " at 0 entries\n" in run.stdout
        # The lock table of the test server (max_connections 200: room for plenty).
        assert "locks: a search planning every partition and generation holds " in run.stdout
        assert "locks: fewer than" not in run.stdout

        async def after() -> None:
            conn = await asyncpg.connect(url)
            try:
                assert await search_blocks.uncovered(conn) == {}
                spans = await conn.fetch(
                    "SELECT first_idx, last_idx FROM search_blocks WHERE log_id = $1"
                    " ORDER BY first_idx",
                    LOG,
                )
                assert [(r["first_idx"], r["last_idx"]) for r in spans] == [
                    (0, 63),
                    (64, 127),
                    (128, 149),
                ]
                assert await _found(conn) == QUERIES
            finally:
                await conn.close()

        asyncio.run(after())


def test_blocks_written_by_binary_copy_read_back_as_given(services: Services) -> None:
    # copy_blocks encodes PostgreSQL's binary COPY itself (not asyncpg's encoder): every column
    # must arrive exactly, times given as datetimes (rows read back) or as microseconds since
    # 2000 (the sealer's), keys at both ends of the 31-bit range, arrays of any length.
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    at = datetime(2026, 12, 5, 6, 30, 1, 123456, tzinfo=UTC)
    micros = (at - epoch) // timedelta(microseconds=1)
    rows = [
        ("audit-0", 0, 63, at, at + timedelta(seconds=3), [0, 1, 2**31 - 1]),
        ("audit-é✓", 64, 64, micros, micros + 1, [42]),
        ("audit-0", 128, 191, micros - 10**6, at, list(range(5000, 0, -1))),
        ("audit-0", 192, 192, at, at, []),
    ]
    name = f"auditlog_copy_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:

        async def check() -> None:
            conn = await asyncpg.connect(url)
            try:
                async with conn.transaction():
                    await search_blocks.copy_blocks(conn, rows)
                    await search_blocks.copy_blocks(conn, [])
                back = await conn.fetch(
                    "SELECT log_id, first_idx, last_idx, first_at, last_at, keys"
                    " FROM search_blocks ORDER BY first_idx"
                )
            finally:
                await conn.close()
            as_datetime = [
                tuple(
                    epoch + timedelta(microseconds=v) if i in (3, 4) and isinstance(v, int) else v
                    for i, v in enumerate(row)
                )
                for row in rows
            ]
            assert [tuple(r) for r in back] == as_datetime

        asyncio.run(check())


@pytest.mark.parametrize("command", [["search-index", "status"], ["search-index", "backfill"],
                                     ["hash-index", "status"]])  # fmt: skip
def test_the_index_commands_refuse_a_database_not_migrated(
    services: Services, command: list[str]
) -> None:
    name = f"auditlog_blocks_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name, migrated_to=0) as url:
        run = subprocess.run(
            [sys.executable, "-m", "auditlog.cli", *command, "--database-url", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 1, run.stderr
    assert f"this build needs {db.SCHEMA_VERSION}: run `auditlog migrate`" in run.stderr
    assert "Traceback" not in run.stderr
