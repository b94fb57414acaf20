"""The optional trigram index over the events' search text: its state, building and dropping it.

Search is narrowed by the search blocks the sealer writes (:mod:`auditlog.core.search_keys`)
whenever a query shows whole tokens. Other text terms (a word's middle, ``actor:alice@exa``) read
the events of the search's range, unless an operator builds this pg_trgm GIN index over the
search text (:data:`auditlog.core.columns.SEARCH_TEXT`; migrations 0002-0003 made it by default,
0007 drops it): then they are looked up in it. With real event text it costs PostgreSQL about ten
times what the blocks cost per sealed event (docs/performance.md), so operators choose:

* ``none`` (what migrations leave): sealing is cheap; searches without whole tokens read their
  time range.
* ``trigram``: such searches are fast too; every sealed event pays for its trigrams.

Dropping and building work as for every optional index (:mod:`auditlog.pg.partitioned_index`):
``drop`` takes a moment's exclusive lock, ``create`` builds partition by partition while the
sealers run, and an interrupted build leaves the index ``incomplete`` until ``create`` runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

import asyncpg

from auditlog.core.columns import SEARCH_TEXT
from auditlog.core.errors import AuditLogError
from auditlog.pg.partitioned_index import PartitionedIndex

__all__ = ["INDEX", "SEARCH_TEXT", "SearchIndexError", "State", "create", "drop", "state"]

INDEX: Final = "events_search_text"
_INDEX: Final = PartitionedIndex(INDEX, f"gin (({SEARCH_TEXT}) gin_trgm_ops)", "_search_text")

State = Literal["trigram", "incomplete", "none"]


class SearchIndexError(AuditLogError):
    """The index cannot be built here: pg_trgm is missing and may not be created."""


async def state(conn: asyncpg.Connection) -> State:
    """``trigram`` when the index serves searches, ``incomplete`` while (or after an interrupted)
    :func:`create`, ``none`` when there is none."""
    valid = await _INDEX.valid(conn)
    if valid is None:
        return "none"
    return "trigram" if valid else "incomplete"


async def drop(conn: asyncpg.Connection) -> None:
    """Remove the index and every partition's copy, attached or left over from a build."""
    await _INDEX.drop(conn)


async def create(conn: asyncpg.Connection, report: Callable[[str], None] = print) -> None:
    """Build the index partition by partition while writes go on; idempotent.

    ``conn`` must not be inside a transaction (``CREATE INDEX CONCURRENTLY`` refuses one).
    """
    await _ensure_trgm(conn)
    if not await _INDEX.create(conn, report):
        raise SearchIndexError(f"{INDEX} is still incomplete; run the build again")


async def _ensure_trgm(conn: asyncpg.Connection) -> None:
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except (asyncpg.InsufficientPrivilegeError, asyncpg.UndefinedFileError) as exc:
        raise SearchIndexError(
            f"pg_trgm is not available ({exc}); a superuser can run CREATE EXTENSION pg_trgm"
        ) from exc
