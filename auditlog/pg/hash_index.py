"""The event-hash index: whether a deployment keeps it, and switching it on or off.

``GET /v1/receipts/{hash}`` finds an event by its hash alone through a hash index on
``events.event_hash`` (migration 0001). Event hashes are random, so each sealed event inserts
into a random page of that index: the one index of ``events`` whose cost grows with the log
(cache misses, then a full-page image of most of its pages after every checkpoint): a seventh
to a third of what PostgreSQL spends per sealed event (docs/performance.md). A receipt asked for
with the event's ``received_at`` (the envelope's, which anyone holding the envelope has) needs
no hash index: it is looked up by time. So operators choose:

* ``hash`` (what migrations create): receipts by hash alone.
* ``none``: sealing is cheaper; a receipt by hash needs ``?received_at=`` (the query service
  answers 400 without it, saying so).

Dropping and building work as for every optional index (:mod:`auditlog.pg.partitioned_index`):
``drop`` takes a moment's exclusive lock, ``create`` builds partition by partition while the
sealers run, and an interrupted build leaves the index ``incomplete`` (not used for lookups)
until ``create`` runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

import asyncpg

from auditlog.core.errors import AuditLogError
from auditlog.pg.partitioned_index import PartitionedIndex

__all__ = ["INDEX", "HashIndexError", "State", "create", "drop", "state"]

INDEX: Final = "events_event_hash"
_INDEX: Final = PartitionedIndex(INDEX, "hash (event_hash)", "_event_hash")

State = Literal["hash", "incomplete", "none"]


class HashIndexError(AuditLogError):
    """A build finished with the index still incomplete (a partition changed under it)."""


async def state(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> State:
    """``hash`` when the index serves lookups, ``incomplete`` while (or after an interrupted)
    :func:`create`, ``none`` when there is none."""
    valid = await _INDEX.valid(conn)
    if valid is None:
        return "none"
    return "hash" if valid else "incomplete"


async def drop(conn: asyncpg.Connection) -> None:
    """Remove the index and every partition's copy, attached or left over from a build."""
    await _INDEX.drop(conn)


async def create(conn: asyncpg.Connection, report: Callable[[str], None] = print) -> None:
    """Build the index partition by partition while writes go on; idempotent.

    ``conn`` must not be inside a transaction (``CREATE INDEX CONCURRENTLY`` refuses one).
    """
    if not await _INDEX.create(conn, report):
        raise HashIndexError(f"{INDEX} is still incomplete; run the build again")
