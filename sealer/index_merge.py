"""The search blocks' upkeep off the seals' path: merging their index, opening generations.

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

The same sealer opens the blocks' next generation (auditlog.pg.search_generations.roll) once the
logs have grown by ``AUDITLOG_SEARCH_GENERATION_ENTRIES`` entries since the newest opened (0:
never), so that the index the seals write stays small, and records the time span of each
generation that no longer takes writes (searches with a time range skip the others). Merging and
opening fail apart: when one cannot go on for good (the role may not, the index is gone), the
other goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Final

import asyncpg
import structlog
from prometheus_client import Counter, Gauge, Histogram

from auditlog.pg.locks import lock_room
from auditlog.pg.search_blocks import lead_merges, merge_pending
from auditlog.pg.search_generations import bound_closed, generations, roll
from auditlog.runtime.eventloop import pause

__all__ = ["DEFAULT_GENERATION_ENTRIES", "DEFAULT_INTERVAL", "merge_loop"]

log = structlog.get_logger("sealer.index_merge")

DEFAULT_INTERVAL: Final = 0.5
# Entries per generation of the search blocks: sealing into an index that grows to 2M realistic
# events costs PostgreSQL up to ~1.4x what a small one does, into one index of 10M 2.1-2.5x
# (docs/performance.md, Seal cost G2, G3, G5); a search probes one index per generation.
DEFAULT_GENERATION_ENTRIES: Final = 2_000_000
# The pace of the turns when only generations are opened (merging off).
_ROLL_INTERVAL: Final = 1.0

MERGED_PAGES = Counter(
    "auditlog_sealer_search_merged_pages_total",
    "Pending-list pages of the search blocks' index this sealer merged into the index's tree",
)
GENERATIONS_OPENED = Counter(
    "auditlog_sealer_search_generations_opened_total",
    "Generations of the search blocks this sealer opened",
)
# 1 once a part of the upkeep ("merge", "generations") stopped for good in this sealer: seals
# then go on slower (merging the pending list themselves, or into a newest generation that
# only grows) until the cause is fixed and the sealers restarted (deploy/runbooks/alerts.md).
UPKEEP_STOPPED = Gauge(
    "auditlog_sealer_search_upkeep_stopped",
    "1 when this sealer stopped a part of the search blocks' upkeep for good (see its log)",
    ["part"],
)
# Set by the leading sealer every _ROOM_EVERY seconds, NaN in the others (PromQL's max() over
# the sealers skips NaN, so it is the leader's figure; no leader, no figure): what grows a
# search's locks, and how many searches planning every partition and generation the server's
# lock table holds (auditlog/pg/locks.py; alert AuditlogSearchLockRoomLow).
GENERATIONS = Gauge(
    "auditlog_sealer_search_generations",
    "Generations of the search blocks there are (the leading sealer's count; NaN elsewhere)",
)
LOCK_ROOM = Gauge(
    "auditlog_sealer_search_lock_room",
    "Searches planning every partition and generation that PostgreSQL's lock table holds"
    " at once (the leading sealer's count; NaN elsewhere)",
)
_ROOM_EVERY: Final = 60.0
MERGE_SECONDS = Histogram(
    "auditlog_sealer_search_merge_seconds",
    "Time of each merge of the search blocks' pending list by this sealer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Errors that the next turn would meet again: the role does not own the index (or may not create
# tables), or the index is gone or not GIN. The sealer goes on without that part of the upkeep;
# seals then merge as PostgreSQL decides, or write into the newest generation as it grows.
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


async def merge_loop(
    pool: asyncpg.Pool,
    interval: float,
    stopping: asyncio.Event,
    *,
    generation_entries: int = 0,
) -> None:
    """Take turns every ``interval`` seconds (every second when 0: no merging) until
    ``stopping`` is set: while this sealer holds the merge lock, merge and open the next
    generation when ``generation_entries`` more entries were sealed (0: never); else try to take
    the lock. A merge under way finishes first (the shutdown order in sealer/main.py allows for
    it). While PostgreSQL cannot be reached the turns space out, up to :data:`_MAX_PAUSE`, and
    the outage is logged once."""
    work = _Upkeep(merging=interval > 0, rolling=generation_entries > 0)
    pace = interval if interval > 0 else _ROLL_INTERVAL
    failures = 0
    wait = pace
    while work.any() and not await pause(stopping, wait):
        try:
            async with pool.acquire() as conn:
                try:
                    leading = False
                    while work.any():
                        if not leading:
                            leading = await lead_merges(conn)
                        if leading:
                            await work.turn(conn, generation_entries)
                        if failures:
                            log.info("search index upkeep again", failed_turns=failures)
                            failures, wait = 0, pace
                        if await pause(stopping, pace):
                            return
                finally:
                    # The sealer's pool keeps session state (sealer/store.py, connect_pool):
                    # the lock must not stay with a connection going back to it.
                    with contextlib.suppress(*_FOR_NOW):
                        await conn.execute("SELECT pg_advisory_unlock_all()")
        except _FOR_NOW as exc:
            work.not_leading()
            failures += 1
            if failures == 1:
                log.warning("search index upkeep failed, retrying", error=type(exc).__name__)
            wait = min(pace * 2 ** min(failures, 16), _MAX_PAUSE)


class _Upkeep:
    """What the leading sealer still does each turn: each part stops for good on its own."""

    def __init__(self, *, merging: bool, rolling: bool) -> None:
        self.merging = merging
        self.rolling = rolling
        self.counted_at: float | None = None
        for part, on in (("merge", merging), ("generations", rolling)):
            if on:
                UPKEEP_STOPPED.labels(part).set(0)
        self.not_leading()

    def not_leading(self) -> None:
        """Not (or no longer) the leader: the lock went with a lost connection, and another
        sealer counts from now on."""
        self.counted_at = None
        GENERATIONS.set(math.nan)
        LOCK_ROOM.set(math.nan)

    def any(self) -> bool:
        return self.merging or self.rolling

    async def turn(self, conn: asyncpg.pool.PoolConnectionProxy, generation_entries: int) -> None:
        if self.rolling:
            try:
                opened = await roll(conn, generation_entries)
                await bound_closed(conn)
            except _FOR_GOOD as exc:
                self.rolling = _off(
                    "generations", "search generations off: the newest one grows on", exc
                )
            else:
                if opened is not None:
                    GENERATIONS_OPENED.inc()
                    log.info("search generation opened", generation=opened)
        if self.merging:
            started = time.perf_counter()
            try:
                merged = await merge_pending(conn)
            except _FOR_GOOD as exc:
                self.merging = _off(
                    "merge", "search index merge off: seals merge the pending list", exc
                )
            else:
                MERGE_SECONDS.observe(time.perf_counter() - started)
                MERGED_PAGES.inc(merged)
        now = time.monotonic()
        if self.counted_at is None or now - self.counted_at >= _ROOM_EVERY:
            self.counted_at = now
            GENERATIONS.set(len(await generations(conn)))
            LOCK_ROOM.set((await lock_room(conn)).searches)


def _off(part: str, message: str, exc: Exception) -> bool:
    """Log and count that a part of the upkeep stops for good; False, its new state."""
    log.warning(message, error=type(exc).__name__, reason=str(exc))
    UPKEEP_STOPPED.labels(part).set(1)
    return False
