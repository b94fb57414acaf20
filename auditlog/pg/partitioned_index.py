"""An optional index over every partition of ``events``: its state, dropping it, building it.

Some of ``events``' indexes serve one kind of lookup and cost every sealed event its share of
PostgreSQL's time, so operators may keep them or not (:mod:`auditlog.pg.search_index`,
:mod:`auditlog.pg.hash_index`). Either way the work is the same:

``drop`` removes the index (a moment's exclusive lock on ``events``: seals under way finish
first and the next ones wait for it). ``create`` builds it while the sealers run: the parent
index is declared on ``events`` alone, each partition's index is built ``CONCURRENTLY`` and then
attached (declaring and attaching take brief locks; the builds let writes go on), and
partitions created meanwhile get theirs at creation. A month split by log is itself
partitioned, so its index is declared on it alone in the same way, built leaf by leaf, and
attached when complete. An interrupted build leaves the index invalid (``valid`` is False);
running ``create`` again finishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

__all__ = ["PartitionedIndex"]


@dataclass(frozen=True, slots=True)
class PartitionedIndex:
    """``name`` on ``events``, ``method`` as in ``CREATE INDEX ... USING <method>``.

    Each partition's own index is named after the partition plus ``suffix``; the ones a
    migration created are named by PostgreSQL, so both spellings are recognised by attachment,
    not by name.
    """

    name: str
    method: str
    suffix: str

    async def valid(
        self, conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
    ) -> bool | None:
        """True when the index serves lookups, False while (or after an interrupted)
        :meth:`create`, None when there is none."""
        valid: bool | None = await conn.fetchval(
            "SELECT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass($1)", self.name
        )
        return valid

    async def drop(self, conn: asyncpg.Connection) -> None:
        """Remove the index and every partition's copy, attached or left over from a build."""
        await conn.execute(f"DROP INDEX IF EXISTS {self.name}")
        for name, partitioned in await self._leftovers(conn):
            if partitioned:  # takes its partitions' indexes with it; CONCURRENTLY cannot drop it
                await conn.execute(f'DROP INDEX IF EXISTS "{name}"')
            else:
                await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')

    async def create(self, conn: asyncpg.Connection, report: Callable[[str], None]) -> bool:
        """Build the index partition by partition while writes go on; idempotent. Returns
        whether it is valid afterwards (only a partition created and dropped while it built
        could leave it otherwise).

        ``conn`` must not be inside a transaction (``CREATE INDEX CONCURRENTLY`` refuses one).
        """
        await conn.execute(
            f"CREATE INDEX IF NOT EXISTS {self.name} ON ONLY events USING {self.method}"
        )
        await self._cover(conn, "events", self.name, report)
        return bool(await self.valid(conn))

    async def _cover(
        self, conn: asyncpg.Connection, table: str, index: str, report: Callable[[str], None]
    ) -> None:
        """Give every partition of ``table`` an index attached to ``table``'s ``index``."""
        for partition, partitioned in await _unindexed_partitions(conn, table, index):
            name = partition + self.suffix
            if partitioned:
                # A month split by log: CONCURRENTLY cannot build on a partitioned table, so its
                # index is declared on it alone (kept from an interrupted build), its partitions
                # covered one by one, and then it is attached like a leaf's.
                await conn.execute(
                    f'CREATE INDEX IF NOT EXISTS "{name}" ON ONLY "{partition}" USING {self.method}'
                )
                await self._cover(conn, partition, name, report)
            else:
                # A build interrupted before its attach leaves an index (possibly invalid) behind.
                await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
                report(f"building {name}")
                await conn.execute(
                    f'CREATE INDEX CONCURRENTLY "{name}" ON "{partition}" USING {self.method}'
                )
            await conn.execute(f'ALTER INDEX "{index}" ATTACH PARTITION "{name}"')

    async def _leftovers(self, conn: asyncpg.Connection) -> list[tuple[str, bool]]:
        """Indexes a build named, on partitions of ``events`` at any depth, attached to nothing;
        partitioned ones (whose drop takes their partitions' along) first."""
        rows = await conn.fetch(
            "SELECT i.relname, i.relkind = 'I' AS partitioned FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_partition_tree('events') t ON t.relid = x.indrelid AND t.level > 0"
            " WHERE right(i.relname, length($1)) = $1 AND NOT EXISTS ("
            "   SELECT FROM pg_inherits ip WHERE ip.inhrelid = x.indexrelid)"
            " ORDER BY partitioned DESC, i.relname",
            self.suffix,
        )
        return [(r["relname"], r["partitioned"]) for r in rows]


async def _unindexed_partitions(
    conn: asyncpg.Connection, table: str, index: str
) -> list[tuple[str, bool]]:
    """The partitions of ``table`` with no index attached to ``index``, and whether each is
    itself partitioned."""
    rows = await conn.fetch(
        "SELECT c.relname, c.relkind = 'p' AS partitioned"
        " FROM pg_inherits p JOIN pg_class c ON c.oid = p.inhrelid"
        " WHERE p.inhparent = $1::regclass AND NOT EXISTS ("
        "   SELECT FROM pg_inherits ip JOIN pg_index x ON x.indexrelid = ip.inhrelid"
        "   WHERE ip.inhparent = to_regclass($2) AND x.indrelid = c.oid)"
        " ORDER BY c.relname",
        table,
        index,
    )
    return [(r["relname"], r["partitioned"]) for r in rows]
