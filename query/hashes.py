"""Finding a sealed event for a receipt: by its hash, through the event-hash index or at its
``received_at``, an erased event through its erasure record (docs/retention.md); or by its log
and index (:func:`find_at`).

The hash index is optional (:mod:`auditlog.pg.hash_index`). With the event's ``received_at`` (its
envelope's, which whoever holds the envelope to verify a receipt has), the lookup reads the
time-ordered index instead, and only the month that time falls in; without it, only the hash
index can find the event, and a deployment without one refuses rather than reading every event.

Without ``received_at``, the lookup probes a month at a time, newest first, each month's
statement locking that month's partitions only, until its end. One statement over ``events``
locks every leaf with its indexes: at 48 logs times 24 months 2,488 relations, whose locks fill
PostgreSQL's default lock table when a few such receipts run at once (docs/performance.md, P8),
and seals then fail for want of a lock slot. An event's hash covers its envelope's
``received_at``, so every row with that hash lies in one month: the first month with a match
holds the answer the one statement gives. Receipts are mostly asked for soon after logging, so
newest first usually ends at the first month.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import asyncpg

from auditlog.pg import hash_index
from query.search_months import Month, event_months, month_table
from query.search_sql import Filter

# An event's row for a receipt. The tenant condition is part of the lookup, so a tenant's
# receipt is found even when another tenant logged an identical envelope.
_BY_HASH = (
    "SELECT log_id, idx, tenant_id FROM events"
    " WHERE event_hash = $1 AND ($2::text IS NULL OR tenant_id = $2)"
    ' ORDER BY log_id COLLATE "C" LIMIT 1'
)


def _by_hash_in(month: Month) -> str:
    """The lookup within one month, read from the month's own partition of ``events``: its plan
    covers that month's leaves only, as a generic plan too (one over ``events`` with the
    month's bounds as parameters prunes at run time, after locking every leaf), and it needs no
    time condition, which PostgreSQL may otherwise answer by scanning the month's time index
    beside the hash index. One statement per month in asyncpg's statement cache of each
    connection (100 by default)."""
    return (
        f"SELECT log_id, idx, tenant_id FROM {month_table(month)}"  # noqa: S608 - our name
        " WHERE event_hash = $1 AND ($2::text IS NULL OR tenant_id = $2)"
        ' ORDER BY log_id COLLATE "C" LIMIT 1'
    )


_BY_HASH_AT = (
    "SELECT log_id, idx, tenant_id FROM events"
    " WHERE received_at = $3 AND event_hash = $1 AND ($2::text IS NULL OR tenant_id = $2)"
    ' ORDER BY log_id COLLATE "C" LIMIT 1'
)

# By log and index: the primary key's prefix, in each month's leaf of the log.
_AT = "SELECT log_id, idx, tenant_id, event_hash FROM events WHERE log_id = $1 AND idx = $2"

# An erased event keeps its receipt: its record holds the hash, log, index and tenant.
_ERASED = (
    "SELECT log_id, idx, tenant_id FROM erasures"
    " WHERE event_hash = $1 AND ($2::text IS NULL OR tenant_id = $2)"
    ' ORDER BY log_id COLLATE "C" LIMIT 1'
)


class HashIndexProbe:
    """Whether the event-hash index serves lookups, read again at most every ``ttl`` seconds
    (an operator's ``auditlog hash-index drop`` or ``create`` shows within that)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool, self._ttl, self._clock = pool, ttl, clock
        self._known: bool | None = None
        self._read_at = 0.0

    async def available(self) -> bool:
        now = self._clock()
        if self._known is None or now - self._read_at >= self._ttl:
            async with self._pool.acquire() as conn:
                self._known = await hash_index.state(conn) == "hash"
            self._read_at = now
        return self._known


async def find_by_hash(
    pool: asyncpg.Pool, digest: bytes, tenant_id: str | None, received_at: datetime | None
) -> asyncpg.Record | None:
    """The row of the sealed event with this hash (and tenant, for a tenant-bound token), or
    None. Without ``received_at`` this needs the hash index: ask :class:`HashIndexProbe` first."""
    if received_at is not None:
        row = await pool.fetchrow(_BY_HASH_AT, digest, tenant_id, received_at)
    else:
        async with pool.acquire() as conn:
            row = await _by_hash_month_by_month(conn, digest, tenant_id)
    return row if row is not None else await pool.fetchrow(_ERASED, digest, tenant_id)


async def find_at(pool: asyncpg.Pool, log_id: str, idx: int) -> asyncpg.Record | None:
    """The row of the event at ``idx`` of ``log_id`` (log_id, idx, tenant_id, event_hash), or
    None: a receipt by index for a tenant-bound token, and by idempotency key."""
    return await pool.fetchrow(_AT, log_id, idx)


async def _by_hash_month_by_month(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    digest: bytes,
    tenant_id: str | None,
) -> asyncpg.Record | None:
    # Each statement on its own (no transaction): its locks go when it ends. An event sealed
    # meanwhile is in the newest month, read first, or was not sealed yet when asked for.
    months = await event_months(conn, Filter())
    if months is None:  # events outside every month: only one statement finds them all
        return await conn.fetchrow(_BY_HASH, digest, tenant_id)
    for month in reversed(months):
        try:
            row = await conn.fetchrow(_by_hash_in(month), digest, tenant_id)
        except asyncpg.UndefinedTableError:
            continue  # dropped by retention since the catalog was read: its events are gone
        if row is not None:
            return row
    return None
