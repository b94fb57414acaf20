"""Compacting the search blocks' closed generations into fewer, larger ones.

Every generation of ``search_blocks`` (auditlog/pg/search_generations.py) costs a search that
its time range does not narrow three relation locks, held until the search ends, and ~0.07 ms
of planning (docs/performance.md, Z3). Generations open every 2M entries by default, so a log
sealing 1,000 events/s opens 43 a day and ~15,000 a year: one search would then need ~47,000
lock slots where PostgreSQL's defaults have 6,400 for everything. Keeping generations small is
what keeps sealing cheap (an index takes inserts at the cost of its size); once closed, nothing
writes into them, and they can be rewritten as one.

:func:`plan` groups adjacent closed generations (all but the two newest) into runs of at most
``entries`` entries; :func:`compact` rewrites each run of two or more as one table, in one
transaction per run:

1. the run's blocks are copied into a new table under the run's first generation number, and
   their GIN index and key are built once (holding ACCESS SHARE on the run's tables only: seals,
   searches, retention and erasure go on);
2. the swap holds ``search_blocks`` ACCESS EXCLUSIVE for a moment (as dropping a generation
   does): tried for :data:`SWAP_LOCK_TIMEOUT` at a time, so that seals queued behind the request
   wait at most that long, up to ``attempts`` times (a running search holds its lock until it
   ends); then the copy gives up, and the database is as it was;
3. holding it, whatever the run's tables lost while the copy was made is deleted from the copy
   (closed generations only lose blocks: retention deletes pruned ones, erasure moves a block
   into the newest generation), the run's tables are dropped, the copy takes the first one's
   name and is attached for the run's whole range of generation numbers (up to the next
   generation), and the run's rows of ``search_generations`` become one, spanning them all.

Answers do not change: the same blocks, with the same keys, under fewer indexes. Rebuilding an
index costs PostgreSQL about what writing it did (~23 µs per realistic event, docs/performance.md
W), so compaction is an operator's job for a quiet hour (``auditlog search-index compact``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import asyncpg

from auditlog.pg.search_generations import (
    CLOSED,
    LOCK_TIMEOUT,
    Conn,
    bound_closed,
    index_name,
    table_name,
)

__all__ = [
    "DEFAULT_ENTRIES",
    "SWAP_LOCK_TIMEOUT",
    "Closed",
    "Compacted",
    "CompactionError",
    "closed_generations",
    "compact",
    "compact_run",
    "plan",
]

# The entries one compacted generation may hold: 32 of the default 2M. A search reads a GIN
# index in time that grows with the matches, hardly with its size; what grows with size is the
# rebuild, and what retention can drop whole (it deletes the blocks of pruned entries from a
# generation it cannot drop, docs/retention.md).
DEFAULT_ENTRIES: Final = 64_000_000
# How long one try at the swap's ACCESS EXCLUSIVE lock on search_blocks waits: seals arriving
# meanwhile queue behind the request, so this is the most a compaction adds to a seal.
SWAP_LOCK_TIMEOUT: Final = "500ms"
DEFAULT_ATTEMPTS: Final = 20
# Held by a compaction, so that two never rewrite the same generations.
_COMPACT_LOCK_ID: Final = int.from_bytes(b"srchcmpt", "big")
_BUILDING: Final = "search_blocks_compacting"


class CompactionError(Exception):
    """A run could not be compacted (another compaction runs, a generation changed meanwhile,
    or the swap's lock was never granted); the database is as it was."""


@dataclass(frozen=True, slots=True)
class Closed:
    """A closed generation: its number, blocks, and the entries its blocks cover."""

    number: int
    blocks: int
    entries: int


@dataclass(frozen=True, slots=True)
class Compacted:
    """One run compacted: generations ``numbers`` are now generation ``numbers[0]``."""

    numbers: tuple[int, ...]
    blocks: int
    entries: int
    seconds: float
    swap_attempts: int


async def closed_generations(conn: Conn) -> list[Closed]:
    """Every generation but the two newest, oldest first, with what its blocks hold."""
    rows = await conn.fetch(
        "SELECT g.generation, count(b.first_idx) AS blocks,"  # noqa: S608 - CLOSED is fixed text
        " coalesce(sum(b.last_idx - b.first_idx + 1), 0)::bigint AS entries"
        " FROM search_generations g LEFT JOIN search_blocks b ON b.generation = g.generation"
        f" WHERE g.{CLOSED}"
        " GROUP BY g.generation ORDER BY g.generation"
    )
    return [Closed(r["generation"], r["blocks"], r["entries"]) for r in rows]


def plan(closed: list[Closed], entries: int) -> list[tuple[int, ...]]:
    """Runs of adjacent generations holding at most ``entries`` entries together, each of two
    or more (a generation alone is left as it is)."""
    runs: list[list[Closed]] = []
    for generation in closed:
        run = runs[-1] if runs else None
        if run is not None and sum(g.entries for g in run) + generation.entries <= entries:
            run.append(generation)
        else:
            runs.append([generation])
    return [tuple(g.number for g in run) for run in runs if len(run) > 1]


async def compact(
    conn: Conn,
    entries: int = DEFAULT_ENTRIES,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    report: Callable[[str], None] = lambda _: None,
) -> list[Compacted]:
    """Compact every run :func:`plan` finds, oldest first; returns what was done. A run that
    cannot be compacted raises :class:`CompactionError` (those before it stay compacted).
    ``conn`` must not be inside a transaction."""
    await bound_closed(conn)  # a run's span is its generations' spans together
    done = []
    for run in plan(await closed_generations(conn), entries):
        report(f"compacting generations {run[0]}-{run[-1]} ({len(run)})")
        done.append(await compact_run(conn, run, attempts=attempts))
    return done


async def compact_run(conn: Conn, run: tuple[int, ...], *, attempts: int) -> Compacted:
    """Rewrite the closed generations ``run`` (adjacent, oldest first) as one: see the module's
    docstring. ``conn`` must not be inside a transaction."""
    started = asyncio.get_running_loop().time()
    first, last = run[0], run[-1]
    tables = [table_name(n) for n in run]
    # Every name below is made from an integer or a constant; nothing else is spliced in.
    sources = " UNION ALL ".join(
        f"SELECT log_id, first_idx, last_idx, first_at, last_at, keys FROM {t}"  # noqa: S608
        for t in tables
    )
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _COMPACT_LOCK_ID):
            raise CompactionError("another compaction is running")
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await _check_run(conn, run)
        # The run's range of numbers ends where the next generation begins: its last member may
        # be a compacted one, whose partition covers numbers past its own.
        upper = await conn.fetchval(
            "SELECT min(generation) FROM search_generations WHERE generation > $1", last
        )
        try:
            await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS SHARE MODE")
        except (asyncpg.UndefinedTableError, asyncpg.LockNotAvailableError) as exc:
            raise CompactionError(f"generations {first}-{last}: {type(exc).__name__}") from exc
        await conn.execute(
            f"CREATE TABLE {_BUILDING} (LIKE search_blocks INCLUDING STORAGE);"  # noqa: S608
            f" INSERT INTO {_BUILDING}"
            " (log_id, first_idx, last_idx, first_at, last_at, keys, generation)"
            f" SELECT log_id, first_idx, last_idx, first_at, last_at, keys, {first}"
            f" FROM ({sources}) s;"
            # The key fails, and the run with it, should two of its blocks start at one entry:
            # the sealers and erasure keep a block in one generation only.
            f" ALTER TABLE {_BUILDING} ADD CONSTRAINT {_BUILDING}_pkey"
            "  PRIMARY KEY (log_id, first_idx, generation);"
            f" CREATE INDEX {_BUILDING}_keys ON {_BUILDING} USING gin (keys);"
            # Proves the partition's bound, so that attaching does not scan the table again.
            f" ALTER TABLE {_BUILDING} ADD CONSTRAINT {table_name(first)}_range"
            f"  CHECK (generation >= {first} AND generation < {int(upper)})"
        )
        tries = await _lock_for_swap(conn, attempts)
        # Holding search_blocks: nothing writes or reads any generation now.
        copied = await conn.fetchval(f"SELECT count(*) FROM {_BUILDING}")  # noqa: S608
        still = await conn.fetchval(f"SELECT count(*) FROM ({sources}) s")  # noqa: S608
        if still != copied:
            await conn.execute(
                f"DELETE FROM {_BUILDING} c WHERE NOT EXISTS"  # noqa: S608
                f" (SELECT 1 FROM ({sources}) s"
                "  WHERE s.log_id = c.log_id AND s.first_idx = c.first_idx)"
            )
        row = await conn.fetchrow(
            "SELECT count(*) AS blocks,"  # noqa: S608
            " coalesce(sum(last_idx - first_idx + 1), 0)::bigint AS entries,"
            " coalesce(min(first_at), 'infinity') AS first_at,"
            " coalesce(max(last_at), '-infinity') AS last_at"
            f" FROM {_BUILDING}"
        )
        assert row is not None  # an aggregate's one row
        await conn.execute(
            f"DROP TABLE {', '.join(tables)};"
            f" ALTER TABLE {_BUILDING} RENAME TO {table_name(first)};"
            f" ALTER TABLE {table_name(first)}"
            f"  RENAME CONSTRAINT {_BUILDING}_pkey TO {table_name(first)}_pkey;"
            f" ALTER INDEX {_BUILDING}_keys RENAME TO {index_name(first)};"
            f" ALTER TABLE search_blocks ATTACH PARTITION {table_name(first)}"
            f"  FOR VALUES FROM ({first}) TO ({int(upper)})"
        )
        await conn.execute(
            "UPDATE search_generations SET first_at = $2, last_at = $3 WHERE generation = $1",
            first,
            row["first_at"],
            row["last_at"],
        )
        await conn.execute(
            "DELETE FROM search_generations WHERE generation > $1 AND generation <= $2",
            first,
            last,
        )
    return Compacted(
        run,
        row["blocks"],
        row["entries"],
        round(asyncio.get_running_loop().time() - started, 3),
        tries,
    )


async def _check_run(conn: Conn, run: tuple[int, ...]) -> None:
    """The run is still what was planned: the same closed, bounded generations, adjacent."""
    rows = await conn.fetch(
        "SELECT generation, first_at IS NOT NULL AS bounded,"  # noqa: S608 - fixed text
        f" {CLOSED} AS closed"
        " FROM search_generations WHERE generation BETWEEN $1 AND $2 ORDER BY generation",
        run[0],
        run[-1],
    )
    if tuple(r["generation"] for r in rows) != run or not all(
        r["bounded"] and r["closed"] for r in rows
    ):
        raise CompactionError(f"generations {run[0]}-{run[-1]} changed since they were planned")


async def _lock_for_swap(conn: Conn, attempts: int) -> int:
    """Take search_blocks ACCESS EXCLUSIVE, each try waiting :data:`SWAP_LOCK_TIMEOUT`, within
    a savepoint so that a refused try loses nothing built; returns the tries it took."""
    for attempt in range(1, attempts + 1):
        try:
            async with conn.transaction():  # a savepoint
                await conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
                await conn.execute("LOCK TABLE search_blocks IN ACCESS EXCLUSIVE MODE")
                return attempt
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            # Give the seals that queued behind the request their turn before the next try.
            await asyncio.sleep(min(0.25 * attempt, 2.0))
    raise CompactionError(
        f"search_blocks stayed locked through {attempts} tries of {SWAP_LOCK_TIMEOUT}"
        " (long searches or an ALTER): run it again at a quieter moment"
    )
