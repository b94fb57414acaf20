"""What the forwarder still owes its destinations, for retention to keep (docs/forwarding.md).

A destination's cursor in a log is the first index it has not yet acknowledged (migration
0009). Retention must not drop an entry at or above the lowest cursor of its log, unless told
to: :func:`undelivered_from` gives that bound per log. A destination that has no cursor yet in a
log (its forwarder has not reached the log, or is not running) holds the whole log, since it
may start from the beginning; one removed with ``auditlog forward forget`` holds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def undelivered_from(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool,
    destinations: Sequence[str] | None = None,
) -> dict[str, int]:
    """Log -> the lowest index some destination (of ``destinations``, or any) has not yet
    acknowledged; logs no destination holds are absent."""
    rows = await conn.fetch(
        "SELECT l.log_id, min(coalesce(c.next_idx, 0)) AS keep_from"
        " FROM logs l CROSS JOIN forward_destinations d"
        " LEFT JOIN forward_cursors c ON c.destination = d.name AND c.log_id = l.log_id"
        " WHERE $1::text[] IS NULL OR d.name = ANY($1::text[])"
        " GROUP BY l.log_id",
        None if destinations is None else list(destinations),
    )
    return {r["log_id"]: int(r["keep_from"]) for r in rows}
