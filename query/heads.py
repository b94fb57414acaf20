"""Log heads (size, root, signed checkpoint) reused for a moment across requests.

A receipt needs the log's latest signed checkpoint; reading it from PostgreSQL on every request
costs a query per receipt. A head is an immutable snapshot of one ``logs`` row (size, root and
checkpoint read together), so a proof built against it and returned with its checkpoint is
consistent however old the head is; reusing it only means a receipt may name a checkpoint a
little older than the newest one. A head is never used for an entry at or beyond its size: such
a request reads the head again.

A head is fresh for ``ttl`` seconds after it was read. For another ``ttl`` it is still served
while one background read replaces it (stale-while-revalidate), so a slow read of the ``logs``
row (a busy database) does not hold up every request that arrives meanwhile; a receipt names a
checkpoint at most ``2 * ttl`` seconds (plus one read) older than the newest. Older heads are
not served: those requests wait for the read.

Reads are coalesced: one query per log at a time, shared by every request waiting for it. The
reads run as tasks of the caller's task group (``spawn``); a failed read fails the requests
waiting for it, and is logged when nobody waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

from query.proofs import LRU, LogHead, load_head

log = structlog.get_logger("query")

HEAD_READS = Counter("auditlog_query_head_reads_total", "Log heads used by receipts", ["source"])
_FROM_CACHE = HEAD_READS.labels("cache")
_STALE = HEAD_READS.labels("stale")
_FROM_DATABASE = HEAD_READS.labels("database")

# A read of the logs row slower than this is logged: every request that waits for it waits
# this long too.
SLOW_READ_SECONDS = 0.05

Spawn = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]


def _cancel_if_pending(pending: asyncio.Future[LogHead | None], _: object) -> None:
    if not pending.done():
        pending.cancel()


class HeadCache:
    """At most ``limit`` log heads, each reused for ``ttl`` seconds after it was read and served
    for another ``ttl`` while a background read replaces it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float,
        spawn: Spawn,
        limit: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._spawn = spawn
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
        if cached is not None and cached[1].size > index:
            expires, known = cached
            now = self._clock()
            if expires > now:
                _FROM_CACHE.inc()
                return known
            if expires + self._ttl > now:
                _STALE.inc()
                self._reading(log_id)
                return known
        head = await self._refresh(log_id)
        if entry_read and head is not None and head.size <= index:
            # A refresh already in flight may have read the row before the entry was sealed.
            head = await self._load(log_id)
        return head

    def _reading(self, log_id: str) -> asyncio.Future[LogHead | None]:
        """The read of ``log_id``'s head under way, started if there is none."""
        pending = self._pending.get(log_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[log_id] = pending
            pending.add_done_callback(partial(self._settled, log_id))
            # However the task ends, cancelled too (even before its first step, when _fill
            # never runs), its waiters are released.
            self._spawn(self._fill(log_id, pending)).add_done_callback(
                partial(_cancel_if_pending, pending)
            )
        return pending

    async def _refresh(self, log_id: str) -> LogHead | None:
        # Shielded: one waiter being cancelled (a client going away) must not cancel the read
        # the other waiters share.
        return await asyncio.shield(self._reading(log_id))

    async def _fill(self, log_id: str, pending: asyncio.Future[LogHead | None]) -> None:
        # Never raises into the task group: the outcome goes to the waiters (a cancellation
        # reaches them through the task's done callback).
        try:
            head = await self._load(log_id)
        except Exception as exc:  # noqa: BLE001 - handed to every waiter, whatever it is
            if not pending.done():
                pending.set_exception(exc)
        else:
            if not pending.done():
                pending.set_result(head)

    def _settled(self, log_id: str, done: asyncio.Future[LogHead | None]) -> None:
        if self._pending.get(log_id) is done:
            del self._pending[log_id]
        if not done.cancelled() and (exc := done.exception()) is not None:
            # Retrieved here too, in case every waiter went away (or none waited).
            log.warning("head_read_failed", log_id=log_id, error=repr(exc))

    async def _load(self, log_id: str) -> LogHead | None:
        _FROM_DATABASE.inc()
        read_at = self._clock()
        began = time.perf_counter()
        head = await load_head(self._pool, log_id)
        took = time.perf_counter() - began
        if took >= SLOW_READ_SECONDS:
            log.warning("slow_head_read", log_id=log_id, ms=round(took * 1000, 1))
        if head is None or self._ttl <= 0:
            return head
        cached = self._heads.get(log_id)
        # Reads can finish out of order; never replace a head by an older one.
        if cached is None or cached[1].size <= head.size:
            self._heads[log_id] = (read_at + self._ttl, head)
        return head
