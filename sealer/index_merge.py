"""Merging the search blocks' index off the seals' path.

Every seal adds its blocks' keys to the GIN index's pending list; PostgreSQL merges that list into
the index's tree in the session whose insert finds it past 4 MB, and with realistic events that was
a seal every ~3 s at 10k events/s (~125 bytes of pending list per event), spending most of a second
of its transaction merging ~34,000 events' keys while its partition's next batches waited: most of
the tail of produce→sealed latency (bench/JOURNAL.md, 2026-12-05 08:20). Here one sealer of the
group, the one whose connection holds the merge lock (auditlog.pg.search_blocks.lead_merges),
merges it every ``AUDITLOG_SEARCH_MERGE_INTERVAL`` seconds (0.5 by default; 0: never, seals merge
as before) on a connection of its own; the others try to take the lock at the same pace, so when
that sealer stops or dies (its session ends, the lock with it), another one merges from its next
turn. The list stays at about half a second of keys and no seal waits for it. The merge costs
PostgreSQL the same CPU wherever it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

import asyncpg
import structlog
from prometheus_client import Counter, Histogram

from auditlog.pg.search_blocks import lead_merges, merge_pending
from auditlog.runtime.eventloop import pause

__all__ = ["DEFAULT_INTERVAL", "merge_loop"]

log = structlog.get_logger("sealer.index_merge")

DEFAULT_INTERVAL: Final = 0.5

MERGED_PAGES = Counter(
    "auditlog_sealer_search_merged_pages_total",
    "Pending-list pages of the search blocks' index this sealer merged into the index's tree",
)
MERGE_SECONDS = Histogram(
    "auditlog_sealer_search_merge_seconds",
    "Time of each merge of the search blocks' pending list by this sealer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Errors that the next turn would meet again: the role does not own the index, or the index is
# gone or not GIN. The sealer goes on without merging; seals then merge as PostgreSQL decides.
_FOR_GOOD: Final = (
    asyncpg.InsufficientPrivilegeError,
    asyncpg.UndefinedTableError,
    asyncpg.WrongObjectTypeError,
)
# Errors of one turn (a restart, a failover, a cancelled statement): the next turn starts over
# on a connection from the pool.
_FOR_NOW: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# The longest wait between two turns after failed ones (seconds).
_MAX_PAUSE: Final = 30.0


async def merge_loop(pool: asyncpg.Pool, interval: float, stopping: asyncio.Event) -> None:
    """Take turns every ``interval`` seconds until ``stopping`` is set: merge while this sealer
    holds the merge lock, else try to take it. A merge under way finishes first (the shutdown
    order in sealer/main.py allows for it). While PostgreSQL cannot be reached the turns space
    out, up to :data:`_MAX_PAUSE`, and the outage is logged once."""
    if interval <= 0:
        return
    failures = 0
    wait = interval
    while not await pause(stopping, wait):
        try:
            async with pool.acquire() as conn:
                try:
                    leading = False
                    while True:
                        if not leading:
                            leading = await lead_merges(conn)
                        if leading:
                            started = time.perf_counter()
                            merged = await merge_pending(conn)
                            MERGE_SECONDS.observe(time.perf_counter() - started)
                            MERGED_PAGES.inc(merged)
                        if failures:
                            log.info("search index merges again", failed_turns=failures)
                            failures, wait = 0, interval
                        if await pause(stopping, interval):
                            return
                finally:
                    # The sealer's pool keeps session state (sealer/store.py, connect_pool):
                    # the lock must not stay with a connection going back to it.
                    with contextlib.suppress(*_FOR_NOW):
                        await conn.execute("SELECT pg_advisory_unlock_all()")
        except _FOR_GOOD as exc:
            log.warning(
                "search index merge off: seals merge the pending list themselves",
                error=type(exc).__name__,
                reason=str(exc),
            )
            return
        except _FOR_NOW as exc:
            failures += 1
            if failures == 1:
                log.warning("search index merge failed, retrying", error=type(exc).__name__)
            wait = min(interval * 2 ** min(failures, 16), _MAX_PAUSE)
