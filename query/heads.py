"""Log heads (size, root, signed checkpoint) reused for a moment across requests.

A receipt needs the log's latest signed checkpoint; reading it from PostgreSQL on every request
costs a query per receipt. A head is an immutable snapshot of one ``logs`` row (size, root and
checkpoint read together), so a proof built against it and returned with its checkpoint is
consistent however old the head is; reusing it for ``ttl`` seconds only means a receipt may
name a checkpoint up to ``ttl`` seconds older than the newest one. A head is never used for an
entry at or beyond its size: such a request reads the head again.

Refreshes are coalesced: when a head expires under load, one query serves every request that
asks for it meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

import asyncpg
from prometheus_client import Counter

from query.proofs import LRU, LogHead, load_head

HEAD_READS = Counter("auditlog_query_head_reads_total", "Log heads used by receipts", ["source"])
_FROM_CACHE = HEAD_READS.labels("cache")
_FROM_DATABASE = HEAD_READS.labels("database")


class HeadCache:
    """At most ``limit`` log heads, each reused for ``ttl`` seconds after it was read."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float,
        limit: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        self._heads: LRU[str, tuple[float, LogHead]] = LRU(limit)
        # One refresh in flight per log; entries leave when it completes, so this stays as
        # small as the number of logs being refreshed at once.
        self._pending: dict[str, asyncio.Future[LogHead | None]] = {}

    async def covering(self, log_id: str, index: int, *, entry_read: bool = True) -> LogHead | None:
        """A signed head of ``log_id``, with entry ``index`` in it when it is sealed; None if the
        log has no checkpoint. The caller checks ``index < head.size``.

        With ``entry_read``, the caller has read entry ``index`` from ``events`` before asking,
        so a head read from now on includes it (the sealer writes events and the head in one
        transaction), and a refresh that began earlier is not trusted to say otherwise. Without
        it, one refresh answers: asking for entries not (yet) sealed costs at most one query.
        """
        cached = self._heads.get(log_id)
        if cached is not None and cached[0] > self._clock() and cached[1].size > index:
            _FROM_CACHE.inc()
            return cached[1]
        head = await self._refresh(log_id)
        if entry_read and head is not None and head.size <= index:
            # A refresh already in flight may have read the row before the entry was sealed.
            head = await self._load(log_id)
        return head

    async def _refresh(self, log_id: str) -> LogHead | None:
        pending = self._pending.get(log_id)
        if pending is None:
            pending = asyncio.ensure_future(self._load(log_id))
            self._pending[log_id] = pending
            pending.add_done_callback(partial(self._settled, log_id))
        # Shielded: one waiter being cancelled (a client going away) must not cancel the read
        # the other waiters share.
        return await asyncio.shield(pending)

    def _settled(self, log_id: str, done: asyncio.Future[LogHead | None]) -> None:
        if self._pending.get(log_id) is done:
            del self._pending[log_id]
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every waiter went away

    async def _load(self, log_id: str) -> LogHead | None:
        _FROM_DATABASE.inc()
        read_at = self._clock()
        head = await load_head(self._pool, log_id)
        if head is None or self._ttl <= 0:
            return head
        cached = self._heads.get(log_id)
        # Reads can finish out of order; never replace a head by an older one.
        if cached is None or cached[1].size <= head.size:
            self._heads[log_id] = (read_at + self._ttl, head)
        return head
