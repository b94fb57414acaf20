"""The data bench_query measures against: a log's tiles built with ``integrate`` and its
``events`` rows generated in SQL, with the migrated schema's indexes rebuilt afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.hashing import RFC6962_SHA256, get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.tiles import TileID
from bench.harness import (
    Bench,
)

T = TypeVar("T")

# The migrated schema's secondary indexes on events (all but the primary key and the hash
# lookup), dropped for the bulk load and rebuilt from their own definitions afterwards.
_SECONDARY_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
 WHERE tablename = 'events' AND indexname NOT IN ('events_pkey', 'events_event_hash')
 ORDER BY indexname
"""


# Templated events in SQL: what the receipts benchmark reads (search is bench_search's).
_GENERATE = """
INSERT INTO events (log_id, idx, event_hash, envelope, received_at, kafka_offset,
    tenant_id, actor, action, target, status, source, message)
SELECT $1, i, sha256(env), env, at, i, tenant, actor, action, target, status,
       source, message
FROM (
    SELECT i, at, tenant, actor, action, target, status, source, message,
        convert_to(json_build_object('event', json_build_object(
            'actor', actor, 'action', action, 'message', message,
            'source', source, 'status', status, 'target', target,
            'tenant_id', tenant),
            'received_at', to_char(at AT TIME ZONE 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text, 'UTF8') AS env
    FROM (
        SELECT i,
            timestamptz '2026-01-01' + i * interval '1 millisecond' AS at,
            't' || (i % 50) AS tenant,
            'user' || (i % 10000) || '@example.com' AS actor,
            (ARRAY['login','logout','read','write','delete','grant',
                   'revoke','export'])[i % 8 + 1] AS action,
            'res/' || (i % 100000) AS target,
            CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'ok' END AS status,
            'svc' || (i % 20) AS source,
            'event ' || i || ' ' || md5(i::text) AS message
        FROM generate_series($2::bigint, $3::bigint - 1) AS i
    ) g
) e
"""


async def secondary_indexes(bench: Bench) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(bench.database_url)
    try:
        return list(await conn.fetch(_SECONDARY_INDEXES))
    finally:
        await conn.close()


async def build_log(
    url: str, log_id: str, topic: str, size: int, signer: NoteSigner, partition: int = 0
) -> float:
    """Tiles of a ``size``-leaf log (leaf i = H(i)) of ``topic``'s Kafka partition
    ``partition``, its log row and a signed checkpoint."""
    hasher = get_hasher(RFC6962_SHA256)
    origin = f"bench.auditlog.test/{topic}/{partition}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO logs (log_id, origin, topic, kafka_partition, hash_scheme, root)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            log_id, origin, topic, partition, RFC6962_SHA256, hasher.empty_root(),
        )  # fmt: skip
        edge: dict[TileID, bytes] = {}
        done, root = 0, hasher.empty_root()
        began = time.perf_counter()
        while done < size:
            n = min(100_000, size - done)
            leaves = [hasher.hash_leaf(str(i).encode()) for i in range(done, done + n)]
            result = integrate(hasher, done, {t: edge[t] for t in tiles_to_fetch(done)}, leaves)
            await conn.executemany(
                "INSERT INTO tiles (log_id, level, idx, data) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (log_id, level, idx) DO UPDATE SET data = EXCLUDED.data",
                [(log_id, t.level, t.index, d) for t, d in result.tiles.items()],
            )
            edge = dict(result.tiles)
            done, root = result.size, result.root
        note = sign_note(Checkpoint(origin, size, root).to_text(), [signer])
        await conn.execute(
            "UPDATE logs SET size = $2, root = $3, next_offset = $2, checkpoint = $4"
            " WHERE log_id = $1",
            log_id, size, root, note,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO checkpoints (log_id, size, root, note) VALUES ($1, $2, $3, $4)",
            log_id, size, root, note,
        )  # fmt: skip
        built = time.perf_counter() - began
        print(f"log: {size:,} leaves; tiles built and stored in {built:.1f} s")
    finally:
        await conn.close()
    return built


async def rebuilding_indexes(
    url: str,
    fill: Callable[[str], Awaitable[T]],
    without: frozenset[str] = frozenset(),
) -> tuple[T, dict[str, Any]]:
    """Drop the schema's secondary indexes, ``await fill(url)``, then build them again (but
    those in ``without``) and vacuum; returns what ``fill`` returned and the seconds each took."""
    figures: dict[str, Any] = {"index_s": {}}
    conn = await asyncpg.connect(url)
    try:
        # pg_indexes spells a partitioned index "ON ONLY events", which would build the parent's
        # alone; without ONLY it is built on every partition too.
        indexes = [
            (r["indexname"], r["indexdef"].replace(" ON ONLY ", " ON ", 1))
            for r in await conn.fetch(_SECONDARY_INDEXES)
        ]
        for name, _ in indexes:
            await conn.execute(f"DROP INDEX {name}")
        filled = await fill(url)
        began = time.perf_counter()
        for name, definition in indexes:
            if name in without:
                print(f"  index {name}: not built")
                figures["index_s"][name] = None
                continue
            t0 = time.perf_counter()
            await conn.execute(definition)
            figures["index_s"][name] = time.perf_counter() - t0
            print(f"  index {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        # VACUUM too: after a bulk load autovacuum would otherwise scan the 10M rows while the
        # measurements run; a table that grew over months has been vacuumed as it went.
        t0 = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) events")
        await conn.execute("VACUUM (ANALYZE) search_blocks")
        figures["vacuum_analyze_s"] = time.perf_counter() - t0
        print(f"  vacuum and analyze: {time.perf_counter() - t0:.0f} s", flush=True)
        figures["indexes_and_vacuum_s"] = time.perf_counter() - began
        print(f"indexes built in {time.perf_counter() - began:.0f} s")
    finally:
        await conn.close()
    return filled, figures


async def load_events(
    url: str, log_id: str, size: int, without: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``size`` generated (templated) events, then the schema's secondary indexes but those in
    ``without``; returns the seconds each step took."""

    async def fill(url: str) -> float:
        conn = await asyncpg.connect(url)
        try:
            began = time.perf_counter()
            step = 1_000_000
            for lo in range(0, size, step):
                hi = min(size, lo + step)
                await conn.execute(_GENERATE, log_id, lo, hi)
                print(f"  events: {hi:,} rows ({time.perf_counter() - began:.0f} s)", flush=True)
            print(f"events: {size:,} rows loaded in {time.perf_counter() - began:.0f} s")
            return time.perf_counter() - began
        finally:
            await conn.close()

    load_s, figures = await rebuilding_indexes(url, fill, without)
    return {"rows": size, "load_s": load_s, **figures}
