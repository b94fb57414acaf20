"""The search blocks' generations: which one is written, opening the next, listing them.

``search_blocks`` is partitioned by generation (migration 0011), each generation a table with its
own GIN index over the blocks' keys. Writers leave the generation to the table's default, the
newest one in ``search_generations``. A GIN index costs each insert more as it grows (longer
posting lists, a taller tree of keys, more pages dirtied per merge), so one sealer
(sealer/index_merge.py) opens a new generation whenever the logs have grown by a set number of
entries since the newest opened: :func:`roll`. The cost of sealing then stays that of an index
of at most that many entries, whatever the database holds, and a search probes one small index
per generation instead of one large one.

Opening a generation creates its table and indexes while they are empty, then attaches the table
to ``search_blocks`` and records it, in one transaction: attaching takes a SHARE UPDATE
EXCLUSIVE lock on ``search_blocks``, which seals (ROW EXCLUSIVE) and searches (ACCESS SHARE) do
not wait for (``CREATE TABLE ... PARTITION OF`` would take ACCESS EXCLUSIVE, stopping both).
Seals whose COPY began before the commit finish in the previous generation.

Once a generation is no longer among the two newest, nothing writes there any more (the sealers
write into the newest, a seal that began before it opened into the one before), and
:func:`bound_closed` records its blocks' time span, so that a search with a time range probes
only the generations that overlap it (query/search_sql.py). Retention deletes the blocks of
pruned entries wherever they live; :func:`drop_empty` then drops the generations left without
any (never the two newest), so that searches do not keep planning them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

__all__ = [
    "CLOSED",
    "LOCK_TIMEOUT",
    "Generation",
    "Overlap",
    "bound_closed",
    "drop_empty",
    "generations",
    "index_name",
    "open_next",
    "overlapping",
    "roll",
    "table_name",
]

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# How long opening a generation waits for a lock on search_blocks (an ANALYZE or another
# ALTER of it); the next turn tries again.
LOCK_TIMEOUT: Final = "2s"
# Held while a generation opens, so that two sealers that both believe they merge (the moment
# one hands over to the next) cannot open the same one twice.
_OPEN_LOCK_ID: Final = int.from_bytes(b"srchgens", "big")
_ENTRIES: Final = "SELECT coalesce(sum(size), 0)::bigint FROM logs"
# Whether ``generation`` is closed: not among the two newest, so nothing writes there any more.
CLOSED: Final = "generation < (SELECT max(generation) - 1 FROM search_generations)"


def table_name(generation: int) -> str:
    return f"search_blocks_g{int(generation)}"


def index_name(generation: int) -> str:
    """The generation's GIN index over the blocks' keys."""
    return f"search_blocks_g{int(generation)}_keys"


@dataclass(frozen=True, slots=True)
class Generation:
    number: int
    opened_at: datetime
    entries_at_open: int


@dataclass(frozen=True, slots=True)
class Overlap:
    """The generations a time range may find blocks in: ``first`` to ``last`` (None: none of
    those with a recorded span), and every one from ``unbounded`` on (those without a span
    yet: the newest); ``lowest``, the oldest generation there is."""

    first: int | None
    last: int | None
    unbounded: int | None
    lowest: int | None = None

    @property
    def everything(self) -> bool:
        """Whether these are all the generations there are (a search then names none)."""
        if self.unbounded is None or self.lowest is None:
            return self.unbounded is None
        if self.first is None or self.last is None:
            return self.unbounded <= self.lowest
        return self.first <= self.lowest and self.last + 1 >= self.unbounded


async def overlapping(conn: Conn, start: datetime | None, end: datetime | None) -> Overlap:
    """The generations whose blocks may have been received between ``start`` and ``end``."""
    row = await conn.fetchrow(
        "SELECT min(generation) FILTER (WHERE first_at IS NOT NULL AND within) AS first,"
        " max(generation) FILTER (WHERE first_at IS NOT NULL AND within) AS last,"
        " min(generation) FILTER (WHERE first_at IS NULL) AS unbounded,"
        " min(generation) AS lowest"
        " FROM (SELECT generation, first_at, ($1::timestamptz IS NULL OR last_at >= $1)"
        "  AND ($2::timestamptz IS NULL OR first_at <= $2) AS within"
        "  FROM search_generations) g",
        start,
        end,
    )
    assert row is not None  # an aggregate's one row
    return Overlap(row["first"], row["last"], row["unbounded"], row["lowest"])


async def generations(conn: Conn) -> list[Generation]:
    """Every generation, oldest first."""
    rows = await conn.fetch(
        "SELECT generation, opened_at, entries_at_open FROM search_generations ORDER BY generation"
    )
    return [Generation(r["generation"], r["opened_at"], r["entries_at_open"]) for r in rows]


async def open_next(conn: Conn, *, entries: int | None = None) -> int:
    """Open the generation after the newest and return its number. ``entries``: how many
    entries the logs hold now (read from ``logs`` when None). ``conn`` must not be inside a
    transaction."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _OPEN_LOCK_ID)
        return await _open(conn, entries)


async def _open(conn: Conn, entries: int | None) -> int:
    # Called holding the open lock, inside a transaction.
    newest: int = await conn.fetchval("SELECT max(generation) FROM search_generations")
    number = newest + 1
    table, index = table_name(number), index_name(number)
    if entries is None:
        entries = await conn.fetchval(_ENTRIES)
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    # Every name below is made from an integer; nothing else is spliced in.
    await conn.execute(
        f"CREATE TABLE {table} (LIKE search_blocks INCLUDING STORAGE);"
        f" ALTER TABLE {table} ALTER COLUMN generation SET DEFAULT {number};"
        f" ALTER TABLE {table} ADD CONSTRAINT {table}_pkey"
        "  PRIMARY KEY (log_id, first_idx, generation);"
        f" CREATE INDEX {index} ON {table} USING gin (keys);"
        f" ALTER TABLE search_blocks ATTACH PARTITION {table}"
        f"  FOR VALUES FROM ({number}) TO ({number + 1})"
    )
    await conn.execute(
        "INSERT INTO search_generations (generation, entries_at_open) VALUES ($1, $2)",
        number,
        entries,
    )
    return number


async def roll(conn: Conn, entries_per_generation: int) -> int | None:
    """Open the next generation when the logs have grown by ``entries_per_generation`` entries
    since the newest opened; returns its number, or None when it is not due (or
    ``entries_per_generation`` is 0: never). ``conn`` must not be inside a transaction."""
    if entries_per_generation <= 0:
        return None
    if await _grown(conn) < entries_per_generation:
        return None
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _OPEN_LOCK_ID)
        # Another sealer may have opened it while this one waited for the lock.
        if await _grown(conn) < entries_per_generation:
            return None
        return await _open(conn, None)


async def _grown(conn: Conn) -> int:
    """Entries sealed into the logs since the newest generation opened."""
    grown: int = await conn.fetchval(
        f"SELECT ({_ENTRIES}) - entries_at_open FROM search_generations"  # noqa: S608
        " ORDER BY generation DESC LIMIT 1"
    )
    return grown


async def drop_empty(conn: Conn) -> list[int]:
    """Drop every generation but the two newest that holds no block any more; returns their
    numbers. One that a lock keeps from dropping within :data:`LOCK_TIMEOUT` stays for the next
    call. ``conn`` must not be inside a transaction."""
    dropped = []
    for generation in (await generations(conn))[:-2]:
        table = table_name(generation.number)
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                # Dropping a partition locks search_blocks too, briefly: seals wait that long.
                await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):  # noqa: S608
                    continue
                await conn.execute(f"DROP TABLE {table}")
                await conn.execute(
                    "DELETE FROM search_generations WHERE generation = $1", generation.number
                )
        except asyncpg.LockNotAvailableError:
            continue
        dropped.append(generation.number)
    return dropped


async def bound_closed(conn: Conn) -> list[int]:
    """Record the time span of every generation but the two newest that has none yet; returns
    their numbers. An empty one gets a span no search overlaps."""
    bounded = []
    for (number,) in await conn.fetch(
        f"SELECT generation FROM search_generations WHERE first_at IS NULL AND {CLOSED}"  # noqa: S608
        " ORDER BY generation"
    ):
        try:
            await conn.execute(
                "UPDATE search_generations SET (first_at, last_at) ="  # noqa: S608
                " (SELECT coalesce(min(first_at), 'infinity'), coalesce(max(last_at), '-infinity')"
                f" FROM {table_name(number)}) WHERE generation = $1",
                number,
            )
        except asyncpg.UndefinedTableError:
            continue  # dropped by retention since the list was read
        bounded.append(number)
    return bounded
