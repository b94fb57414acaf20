"""Reads from a PostgreSQL streaming replica, within a lag bound.

With ``AUDITLOG_QUERY_DATABASE_URL`` set, receipts, proofs, tiles, checkpoints, roots and the
log list are read from that server (a replica) while it is at most
``AUDITLOG_QUERY_REPLICA_MAX_LAG`` seconds behind its primary, and from the primary
(``AUDITLOG_DATABASE_URL``) otherwise. Search, result sets, exports and downloads always use the
primary: they write.

A request reads everything from one server: `QueryState.reads` picks a `Reads` (a pool and the
head cache, proof builder and hash-index probe that read through it) once, at its start. A
proof is therefore always built from the tiles of the server whose signed checkpoint it
carries, whatever the other server holds at that moment.

The lag is measured on the replica every half second: 0 while it has replayed all the WAL it
received, else the time since the last transaction it replayed was committed on the primary.
A replica that lost its primary's stream, or cannot be reached, counts as infinitely behind.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog
from prometheus_client import Gauge

from query.hashes import HashIndexProbe
from query.heads import HeadCache
from query.proofs import ProofBuilder

log = structlog.get_logger("query")

PRIMARY: Final = "primary"
REPLICA: Final = "replica"
READ_FROM_HEADER: Final = "Auditlog-Read-From"  # on receipts: which server answered
WATCH_INTERVAL = 0.5

LAG_SECONDS = Gauge(
    "auditlog_query_replica_lag_seconds",
    "How far the read replica is behind its primary (+Inf: unknown or unreachable)",
    multiprocess_mode="max",  # the worst any worker process measured
)

# pg_last_wal_receive_lsn() is NULL when the standby does not stream (it lost its primary, or it
# was promoted and is no standby at all): both count as "not known to be current" but the latter.
LAG_SQL: Final = """
SELECT CASE
  WHEN NOT pg_is_in_recovery() THEN 0
  WHEN pg_last_wal_receive_lsn() IS NULL THEN 'Infinity'::float8
  WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
  ELSE COALESCE(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0)
END::float8
"""


@dataclass(frozen=True, slots=True)
class Reads:
    """One server's read path: its pool and the caches that read through it."""

    source: str  # PRIMARY or REPLICA, sent in READ_FROM_HEADER with receipts
    pool: asyncpg.Pool
    heads: HeadCache
    proofs: ProofBuilder
    hash_index: HashIndexProbe


class ReplicaLag:
    """How far behind the replica is, kept current by `watch`."""

    def __init__(self, pool: asyncpg.Pool, bound: float) -> None:
        self._pool = pool
        self.bound = bound
        self.seconds = math.inf  # until measured

    @property
    def fresh(self) -> bool:
        return self.seconds <= self.bound

    async def measure(self) -> float:
        try:
            async with asyncio.timeout(2):
                lag = float(await self._pool.fetchval(LAG_SQL))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            lag = math.inf
        was_fresh, self.seconds = self.fresh, lag
        LAG_SECONDS.set(lag)
        if was_fresh != self.fresh:
            # One line per change, not per measurement: reads moved between servers.
            if self.fresh:
                log.info("replica_current", lag_seconds=lag, bound_seconds=self.bound)
            else:
                log.warning("replica_behind", lag_seconds=lag, bound_seconds=self.bound)
        return lag

    async def watch(self) -> None:
        while True:
            await self.measure()
            await asyncio.sleep(WATCH_INTERVAL)
