"""The ``events`` partitions the sealer creates: one per month of ``received_at``, each split by
log (docs/sealer.md, "Storage layout").

Creating a partition locks its parent exclusively, so the month a batch needs is created at once
and the month after it ahead of time, with a short lock timeout (:class:`Partitions`). Bounds and
names are spelled from integers: any month a ``received_at`` can name has a partition, December
9999 included, whose end lies in the year 10000.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg
import structlog

from sealer.timestamps import month

__all__ = ["Partitions", "month_bounds", "partition_name"]

# Creating next month's partitions ahead: how long to wait for their locks, and when to try
# again after that wait ran out.
AHEAD_LOCK_TIMEOUT = "100ms"
AHEAD_RETRY_SECONDS = 60.0

log = structlog.get_logger("sealer")


class Partitions:
    """Creates the ``events`` partitions a batch needs, once per process, month and log.

    Each month is a partition of ``events`` (so retention drops whole months), itself split by
    log: one leaf per log and month, plus a default leaf for rows of logs without one. A leaf
    has a single writer, the sealer that owns its log, so each index's insertions land on its
    own right edge instead of among the other logs' (docs/sealer.md). A month created by an
    earlier version as one plain table stays one.

    Creating a partition locks its parent exclusively, so it waits for every search and seal
    under way there, and every later one waits for it. The month a batch needs is created at
    once; the month after it is created ahead, with a short lock timeout, and tried again
    ``retry_after`` seconds later when something held the lock: a month begins with its
    partitions ready, and no seal queues behind a long search for them.
    """

    def __init__(self, retry_after: float = AHEAD_RETRY_SECONDS) -> None:
        self._known: set[tuple[int, int, str]] = set()
        self._retry_at: dict[tuple[int, int, str], float] = {}
        self._retry_after = retry_after

    async def ensure(
        self, pool: asyncpg.Pool | asyncpg.Connection, log_id: str, times: Sequence[int]
    ) -> None:
        """Make sure the leaves for ``log_id`` at ``times`` (microseconds since 2000) exist,
        and try to create the next month's."""
        if not times:
            return
        # Months are contiguous ranges: when the extremes share one, every time is in it.
        first, last = month(min(times)), month(max(times))
        months = {first} if first == last else {month(t) for t in times}
        for year, mon in sorted(months):
            if (year, mon, log_id) not in self._known:
                await self._create(pool, log_id, year, mon, lock_timeout=None)
                self._known.add((year, mon, log_id))
        ahead = (*_next_month(*last), log_id)
        if ahead in self._known or time.monotonic() < self._retry_at.get(ahead, 0.0):
            return
        try:
            await self._create(pool, log_id, ahead[0], ahead[1], lock_timeout=AHEAD_LOCK_TIMEOUT)
        except asyncpg.LockNotAvailableError:
            self._retry_at[ahead] = time.monotonic() + self._retry_after
            log.info("partition_deferred", partition=partition_name(*ahead))
            return
        self._known.add(ahead)
        self._retry_at.pop(ahead, None)

    async def _create(
        self,
        pool: asyncpg.Pool | asyncpg.Connection,
        log_id: str,
        year: int,
        mon: int,
        lock_timeout: str | None,
    ) -> None:
        start, end = month_bounds(year, mon)
        name = partition_name(year, mon)
        # Names and bounds are built from integers and a digest; the log id is quoted as a
        # literal. Each statement is its own short transaction: DDL must not widen the seal
        # transaction; two sealers racing here is harmless.
        async with _connection(pool) as conn:
            if not await _create_partition(
                conn,
                name,
                "events",
                f"FOR VALUES FROM ('{start}') TO ('{end}') PARTITION BY LIST (log_id)",
                lock_timeout,
                blocked_by="events_default",
            ):
                return
            split = await conn.fetchval(
                "SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass", name
            )
            if not split:  # a month of one plain table, from before months were split by log
                return
            await _create_partition(conn, f"{name}_default", name, "DEFAULT", lock_timeout)
            literal = "'" + log_id.replace("'", "''") + "'"
            await _create_partition(
                conn,
                partition_name(year, mon, log_id),
                name,
                f"FOR VALUES IN ({literal})",
                lock_timeout,
                blocked_by=f"{name}_default",
            )


def _next_month(year: int, month: int) -> tuple[int, int]:
    return year + month // 12, month % 12 + 1


def month_bounds(year: int, month: int) -> tuple[str, str]:
    """The ``timestamptz`` literals a month's partition spans, from its first instant to the
    next month's. Spelled from the integers, not by ``datetime``: December 9999 ends in the year
    10000, which PostgreSQL takes and a ``datetime`` cannot hold (a sealer once died of that)."""
    following = _next_month(year, month)
    return (
        f"{year:04d}-{month:02d}-01 00:00:00+00",
        f"{following[0]:04d}-{following[1]:02d}-01 00:00:00+00",
    )


@contextlib.asynccontextmanager
async def _connection(
    pool: asyncpg.Pool | asyncpg.Connection,
) -> AsyncIterator[asyncpg.Connection | asyncpg.pool.PoolConnectionProxy]:
    if isinstance(pool, asyncpg.Pool):
        async with pool.acquire() as conn:
            yield conn
    else:
        yield pool


def partition_name(year: int, month: int, log_id: str | None = None) -> str:
    """``events_YYYY_MM``, the month; with ``log_id``, the month's leaf for that log, named by a
    digest of the log id (topic names are too long and too free for table names)."""
    name = f"events_{year:04d}_{month:02d}"
    if log_id is None:
        return name
    return f"{name}_{hashlib.blake2b(log_id.encode(), digest_size=5).hexdigest()}"


async def _create_partition(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    name: str,
    parent: str,
    bounds: str,
    lock_timeout: str | None,
    blocked_by: str | None = None,
) -> bool:
    """Create partition ``name`` of ``parent`` unless it exists; False if rows block it.

    With ``lock_timeout``, raises :class:`asyncpg.LockNotAvailableError` when the locks it
    needs are not granted in time.
    """
    try:
        with contextlib.suppress(asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
            async with conn.transaction():
                if lock_timeout is not None:
                    await conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {parent} {bounds}"
                )
    except asyncpg.CheckViolationError:
        # Rows that belong in it are in the default partition already (written by something
        # other than a sealer). Sealing must go on: such rows go there too, and only cheap
        # retention (or the per-log split) is lost for them until an operator moves them.
        log.warning("partition_blocked", partition=name, by=blocked_by)
        return False
    return True
