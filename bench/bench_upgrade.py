"""How long upgrading a large database to the current schema holds the seals up.

    .venv/bin/python -m bench.bench_upgrade [--events 100000000] [--logs 12] [--from-version 10]

Migration 0011 turns ``search_blocks`` into a table partitioned by generation: the blocks written
so far become generation 0, whose primary key is rebuilt with the new column, and attaching it
reads all of its rows (auditlog/pg/migrations/0011_search_generations.sql). Meanwhile it holds
``search_blocks`` locked, and every seal writes blocks there. This creates a scratch database at
schema ``--from-version``, writes the search blocks of ``--events`` sealed entries (one row per
64, spread over ``--logs`` logs, in time order as sealers write them), vacuums it as autovacuum
would have, then runs ``auditlog migrate``'s upgrade while a writer seals one block every 20 ms
(the sealers' ``COPY``, whose column list does not name a generation, so that sealers of the
version before the upgrade go on working), and reports how long the upgrade took and how long
the writer waited.

Only what the migrations after ``--from-version`` read is written: the blocks, with short keys
(four per block, held inline) where real ones are arrays of hundreds of keys stored out of line
(``keys`` has ``STORAGE EXTERNAL``): the heap rows the migration reads are as wide either way
(~20 bytes more here), and the blocks' GIN index, which it only renames and attaches, stays
small enough to build in minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from auditlog.devstack import stack
from auditlog.pg import db
from auditlog.pg.search_blocks import copy_blocks
from bench import results
from bench.harness import wait_idle

_BLOCK: Final = 64
_CHUNK: Final = 100_000  # block rows per COPY
_START: Final = datetime(2025, 1, 1, tzinfo=UTC)
# The writer's log: not one of the loaded ones, so its blocks are counted apart.
_WRITER_LOG: Final = "audit.events-writer"


def _chunk(logs: int, first_block: int, count: int, rng: random.Random) -> list[tuple[Any, ...]]:
    """Block rows ``first_block ..`` of the load: block b is the (b // logs)-th of log b % logs,
    sealed at one entry a millisecond for the whole deployment."""
    rows = []
    for b in range(first_block, first_block + count):
        first = (b // logs) * _BLOCK
        at = _START + timedelta(milliseconds=b * _BLOCK)
        keys = [rng.getrandbits(31) for _ in range(4)]
        rows.append(
            (f"audit.events-{b % logs}", first, first + _BLOCK - 1, at,
             at + timedelta(milliseconds=_BLOCK - 1), keys)
        )  # fmt: skip
    return rows


async def _load(url: str, blocks: int, logs: int) -> float:
    rng = random.Random(1)
    began = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        for first in range(0, blocks, _CHUNK):
            async with conn.transaction():
                await copy_blocks(conn, _chunk(logs, first, min(_CHUNK, blocks - first), rng))
            if (first // _CHUNK) % 20 == 0:
                done = min(first + _CHUNK, blocks)
                print(f"  blocks: {done:,} ({time.perf_counter() - began:.0f} s)", flush=True)
        await conn.execute("VACUUM (ANALYZE) search_blocks")
    finally:
        await conn.close()
    return time.perf_counter() - began


async def block_writer(url: str, stop: asyncio.Event, waits: list[tuple[float, float]]) -> None:
    """One block every 20 ms, each in its own transaction as a seal writes it; records when
    each began (perf_counter) and how long it took."""
    conn = await asyncpg.connect(url)
    try:
        n = 0
        while not stop.is_set():
            at = datetime.now(UTC)
            row = (_WRITER_LOG, n * _BLOCK, n * _BLOCK + _BLOCK - 1, at, at, [1, 2, 3, 4])
            began = time.perf_counter()
            async with conn.transaction():
                await copy_blocks(conn, [row])
            waits.append((began, time.perf_counter() - began))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.02)
    finally:
        await conn.close()


async def _upgrade(url: str) -> dict[str, Any]:
    stop = asyncio.Event()
    waits: list[tuple[float, float]] = []
    writer = asyncio.create_task(block_writer(url, stop, waits))
    await asyncio.sleep(1)
    conn = await asyncpg.connect(url)
    try:
        began = time.perf_counter()
        applied = await db.migrate(conn)
        took = time.perf_counter() - began
        await asyncio.sleep(1)
        stop.set()
        await writer
        written = await conn.fetchval(
            "SELECT count(*) FROM search_blocks WHERE log_id = $1", _WRITER_LOG
        )
        version = await db.current_version(conn)
    finally:
        await conn.close()
    overlapping = [w for at, w in waits if at <= began + took and at + w >= began]
    longest = max(w for _, w in waits)
    print(
        f"upgrade ({', '.join(applied)}): {took:.2f} s; the writer's longest seal {longest:.2f} s,"
        f" {len(waits)} seals, {written} found after"
    )
    assert written == len(waits), (written, len(waits))
    return {
        "applied": applied,
        "schema_version": version,
        "upgrade_s": took,
        "writer_seals": len(waits),
        "writer_seals_found_after": written,
        "writer_seals_overlapping_it": len(overlapping),
        "writer_longest_seal_s": longest,
        "writer_seal_ms": results.percentiles([w for _, w in waits], 1000),
    }


async def _sizes(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT relname, pg_table_size(oid) AS table_bytes,"
            " pg_indexes_size(oid) AS index_bytes FROM pg_class"
            " WHERE relname IN ('search_blocks', 'search_blocks_g0') AND relkind = 'r'"
        )
    finally:
        await conn.close()
    return {"heap_bytes": rows[0]["table_bytes"], "index_bytes": rows[0]["index_bytes"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--logs", type=int, default=12)
    parser.add_argument("--from-version", type=int, default=10)
    results.add_option(parser)
    args = parser.parse_args()
    if args.events < _BLOCK or args.logs < 1:
        parser.error("--events: at least 64; --logs: at least 1")
    if args.from_version >= db.SCHEMA_VERSION:
        parser.error(f"--from-version: below the current schema, {db.SCHEMA_VERSION}")
    started = results.now()
    cfg = stack.StackConfig.from_env()
    began_stack = not stack.is_running(cfg)
    if began_stack:
        stack.start(cfg)
    name = f"auditlog_bench_{secrets.token_hex(3)}"
    try:
        url = asyncio.run(db.create_database(cfg.database_url, name, up_to=args.from_version))
        try:
            blocks = args.events // _BLOCK
            print(f"{blocks:,} blocks of {args.events:,} entries at schema {args.from_version}:")
            figures: dict[str, Any] = {
                "blocks": blocks,
                "load_s": asyncio.run(_load(url, blocks, args.logs)),
            }
            figures["before"] = asyncio.run(_sizes(url))
            figures["idle_after_s"] = wait_idle()
            figures.update(asyncio.run(_upgrade(url)))
        finally:
            asyncio.run(db.drop_database(cfg.database_url, name))
    finally:
        if began_stack:
            stack.stop(cfg)
    path = results.write("bench_upgrade", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
