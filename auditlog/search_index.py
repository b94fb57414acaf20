"""The search-text index: whether a deployment keeps it, and switching it on or off.

Every text term of a search (``field:value``, ``field=value``, bare terms) is looked up in one
pg_trgm GIN index over the events' search text (:data:`auditlog.columns.SEARCH_TEXT`, created by
migration 0003). It keeps selective searches at millions of events in milliseconds, and it is
also most of what PostgreSQL spends per sealed event: on a small machine it decides how many
events per second can be sealed (docs/performance.md). So operators choose:

* ``trigram`` (what migrations create): fast substring search; every sealed event pays for its
  trigrams.
* ``none``: sealing is cheaper; search returns the same events, but finds them by reading the
  events of its time range instead of looking them up.

:func:`drop` removes the index (a moment's exclusive lock on ``events``: seals under way finish
first and the next ones wait for it). :func:`create` builds it while the sealers run: the parent
index is declared on ``events`` alone, each partition's index is built ``CONCURRENTLY`` and then
attached (declaring and attaching take brief locks; the builds let writes go on), and
partitions created meanwhile get theirs at creation. A month split by log is itself
partitioned, so its index is declared on it alone in the same way, built leaf by leaf, and
attached when complete. An
interrupted build leaves the index ``incomplete``; running :func:`create` again finishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

import asyncpg

from auditlog.columns import SEARCH_TEXT
from auditlog.errors import AuditLogError

__all__ = ["INDEX", "SEARCH_TEXT", "SearchIndexError", "State", "create", "drop", "state"]

INDEX: Final = "events_search_text"
# Each partition's own index is named after the partition; migration 0003's are named by
# PostgreSQL, so both spellings are recognised by attachment, not by name.
_SUFFIX: Final = "_search_text"

State = Literal["trigram", "incomplete", "none"]


class SearchIndexError(AuditLogError):
    """The index cannot be built here: pg_trgm is missing and may not be created."""


async def state(conn: asyncpg.Connection) -> State:
    """``trigram`` when the index serves searches, ``incomplete`` while (or after an interrupted)
    :func:`create`, ``none`` when there is none."""
    valid = await conn.fetchval(
        "SELECT x.indisvalid FROM pg_index x WHERE x.indexrelid = to_regclass($1)", INDEX
    )
    if valid is None:
        return "none"
    return "trigram" if valid else "incomplete"


async def drop(conn: asyncpg.Connection) -> None:
    """Remove the index and every partition's copy, attached or left over from a build."""
    await conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
    for name, partitioned in await _leftovers(conn):
        if partitioned:  # takes its partitions' indexes with it; CONCURRENTLY cannot drop it
            await conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        else:
            await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


async def create(conn: asyncpg.Connection, report: Callable[[str], None] = print) -> None:
    """Build the index partition by partition while writes go on; idempotent.

    ``conn`` must not be inside a transaction (``CREATE INDEX CONCURRENTLY`` refuses one).
    """
    await _ensure_trgm(conn)
    await conn.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON ONLY events USING {_METHOD}")
    await _cover(conn, "events", INDEX, report)
    if await state(conn) != "trigram":
        # Only a partition created and dropped while we built could leave it so.
        raise SearchIndexError(f"{INDEX} is still incomplete; run the build again")


_METHOD: Final = f"gin (({SEARCH_TEXT}) gin_trgm_ops)"


async def _cover(
    conn: asyncpg.Connection, table: str, index: str, report: Callable[[str], None]
) -> None:
    """Give every partition of ``table`` an index attached to ``table``'s ``index``."""
    for partition, partitioned in await _unindexed_partitions(conn, table, index):
        name = partition + _SUFFIX
        if partitioned:
            # A month split by log: CONCURRENTLY cannot build on a partitioned table, so its
            # index is declared on it alone (kept from an interrupted build), its partitions
            # covered one by one, and then it is attached like a leaf's.
            await conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{name}" ON ONLY "{partition}" USING {_METHOD}'
            )
            await _cover(conn, partition, name, report)
        else:
            # A build interrupted before its attach leaves an index (possibly invalid) behind.
            await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            report(f"building {name}")
            await conn.execute(
                f'CREATE INDEX CONCURRENTLY "{name}" ON "{partition}" USING {_METHOD}'
            )
        await conn.execute(f'ALTER INDEX "{index}" ATTACH PARTITION "{name}"')


async def _ensure_trgm(conn: asyncpg.Connection) -> None:
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except (asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedFileError) as exc:
        raise SearchIndexError(
            f"pg_trgm is not available ({exc}); a superuser can run CREATE EXTENSION pg_trgm"
        ) from exc


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


async def _leftovers(conn: asyncpg.Connection) -> list[tuple[str, bool]]:
    """Indexes a build named, on partitions of ``events`` at any depth, attached to nothing;
    partitioned ones (whose drop takes their partitions' along) first."""
    rows = await conn.fetch(
        "SELECT i.relname, i.relkind = 'I' AS partitioned FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_partition_tree('events') t ON t.relid = x.indrelid AND t.level > 0"
        " WHERE right(i.relname, length($1)) = $1 AND NOT EXISTS ("
        "   SELECT FROM pg_inherits ip WHERE ip.inhrelid = x.indexrelid)"
        " ORDER BY partitioned DESC, i.relname",
        _SUFFIX,
    )
    return [(r["relname"], r["partitioned"]) for r in rows]
