"""Finding a sealed event by its hash: through the event-hash index, or at its ``received_at``;
an erased event through its erasure record (docs/retention.md).

The hash index is optional (:mod:`auditlog.pg.hash_index`). With the event's ``received_at`` (its
envelope's, which whoever holds the envelope to verify a receipt has), the lookup reads the
time-ordered index instead, and only the month that time falls in; without it, only the hash
index can find the event, and a deployment without one refuses rather than reading every event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import asyncpg

from auditlog.pg import hash_index

# An event's row for a receipt. The tenant condition is part of the lookup, so a tenant's
# receipt is found even when another tenant logged an identical envelope.
_BY_HASH = (
    "SELECT log_id, idx, tenant_id FROM events"
    " WHERE event_hash = $1 AND ($2::text IS NULL OR tenant_id = $2)"
    ' ORDER BY log_id COLLATE "C" LIMIT 1'
)
_BY_HASH_AT = (
    "SELECT log_id, idx, tenant_id FROM events"
    " WHERE received_at = $3 AND event_hash = $1 AND ($2::text IS NULL OR tenant_id = $2)"
    ' ORDER BY log_id COLLATE "C" LIMIT 1'
)

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
        row = await pool.fetchrow(_BY_HASH, digest, tenant_id)
    return row if row is not None else await pool.fetchrow(_ERASED, digest, tenant_id)
