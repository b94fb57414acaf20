"""How many of PostgreSQL's lock slots a search takes, and how many there are.

A query locks every table and index its plan may read, partitions included, and holds the locks
until its transaction ends. A search's probe without a time range plans every generation of
``search_blocks`` (auditlog/pg/search_generations.py), three relations each (the table, its key,
its GIN index): with 402 generations one search held 1,231 locks at once (docs/performance.md,
Search, Z5); and a search plans every partition of ``events`` in one statement when events lie
outside every month (``events_default`` holds rows; else it walks the months,
query/search_months.py): 7,421 locks at 48 logs times 24 months, P3. The estimate here is the
most one search can hold at once: one planning every partition and generation. The
slots come from one table shared by the whole server, ``max_locks_per_transaction`` times
(``max_connections`` + ``max_prepared_transactions``); when concurrent transactions need
more, PostgreSQL refuses any transaction that needs one more lock (seals included) with "out of
shared memory" until some end. ``auditlog search-index status`` reports both figures so that
an operator raises ``max_locks_per_transaction`` before partitions and generations add up
(docs/query.md#generations).

A search gives back what it can early: :func:`fetch_released` runs a read in a savepoint rolled
back once its rows are in hand, which releases the locks the read took (PostgreSQL releases a
subtransaction's locks when it is rolled back) while the transaction's snapshot stays. Searches
probe their blocks that way, and read month after month that way, so that what they hold at
once is one statement's plan, not the sum of all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["LockRoom", "fetch_released", "lock_room"]

# Every relation in the partition trees of the tables a search reads by partition, and the
# indexes of their leaves (the planner opens no index of a partitioned table); the few other
# tables a search touches are a constant on top.
_TREES_SQL = """
WITH RECURSIVE tree AS (
    SELECT 'events'::regclass::oid AS rel
    UNION ALL SELECT 'search_blocks'::regclass::oid
    UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.rel
)
SELECT (SELECT count(*) FROM tree)
     + (SELECT count(*) FROM pg_index x JOIN tree t ON x.indrelid = t.rel
        JOIN pg_class c ON c.oid = t.rel AND c.relkind = 'r')
"""
# The other tables and indexes a search holds when its matching statement runs (logs,
# checkpoints, coverage, their indexes; what the probe alone read is released by then): 9
# (tests/integration/test_locks.py checks the sum against a search's locks;
# bench_search_partitions records both at up to 1,230 leaves).
_OTHERS = 9


@dataclass(frozen=True, slots=True)
class LockRoom:
    """``per_search``: the locks a search without a time range holds at most; ``slots``: the
    server's lock table."""

    per_search: int
    slots: int

    @property
    def searches(self) -> int:
        """How many such searches fit in the lock table together, with nothing else."""
        return self.slots // self.per_search


async def lock_room(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> LockRoom:
    per_search = await conn.fetchval(_TREES_SQL)
    slots = await conn.fetchval(
        "SELECT current_setting('max_locks_per_transaction')::int"
        " * (current_setting('max_connections')::int"
        " + current_setting('max_prepared_transactions')::int)"
    )
    return LockRoom(int(per_search) + _OTHERS, int(slots))


async def fetch_released(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, sql: str, *args: Any
) -> list[asyncpg.Record]:
    """The rows of a read inside a transaction, the locks its plan took released after it (a
    savepoint rolled back: nothing it did stays but the rows returned). The snapshot is the
    transaction's, as for any other statement of a repeatable-read one; a statement that fails
    leaves the transaction usable and raises."""
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        return await conn.fetch(sql, *args)
    finally:
        await savepoint.rollback()
