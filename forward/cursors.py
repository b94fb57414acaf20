"""The forwarder's state in PostgreSQL (migration 0009): destinations, cursors, dead letters.

A cursor is one destination's position in one log: the first index not yet acknowledged. A
forwarder process delivers a (destination, log) pair only while it holds the cursor's lease,
renewed with every advance; a process that dies (even by ``kill -9``) leaves a lease that ends
after ``lease`` seconds, and whoever claims the cursor then resumes from its index. Each
advance is a compare-and-swap on (owner, index, generation): a process that lost its lease, or
whose cursor an operator moved (replay bumps the generation), changes nothing and lets go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from forward.config import Destination
from forward.records import Record


@dataclass(frozen=True, slots=True)
class Claim:
    """A cursor this process holds: deliver from ``next_idx``, advance with ``generation``."""

    log_id: str
    next_idx: int
    generation: int


async def register(pool: asyncpg.Pool, destinations: Sequence[Destination]) -> None:
    """Make the destinations known (a new one starts unpaused; a known one keeps its state)."""
    await pool.executemany(
        "INSERT INTO forward_destinations (name, kind) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET kind = excluded.kind",
        [(d.name, d.kind) for d in destinations],
    )


async def paused(pool: asyncpg.Pool, name: str) -> bool | None:
    """Whether the destination is paused; None when it is not registered (forgotten)."""
    value = await pool.fetchval("SELECT paused FROM forward_destinations WHERE name = $1", name)
    return None if value is None else bool(value)


async def logs(pool: asyncpg.Pool, topic: str) -> list[tuple[str, int]]:
    """(log, size) of every log of ``topic``."""
    rows = await pool.fetch(
        "SELECT log_id, size FROM logs WHERE topic = $1 ORDER BY kafka_partition", topic
    )
    return [(r["log_id"], int(r["size"])) for r in rows]


async def claim(
    pool: asyncpg.Pool, destination: Destination, log_id: str, owner: str, lease: float
) -> Claim | None:
    """Take (or renew) the cursor of ``destination`` in ``log_id``, creating it at the start
    the destination asks for; None while another live process holds it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO forward_cursors (destination, log_id, next_idx) VALUES ($1, $2,"
            " CASE WHEN $3 THEN 0 ELSE (SELECT size FROM logs WHERE log_id = $2) END)"
            " ON CONFLICT DO NOTHING",
            destination.name,
            log_id,
            destination.start == "beginning",
        )
        row = await conn.fetchrow(
            "UPDATE forward_cursors SET owner = $3,"
            " lease_until = now() + make_interval(secs => $4), updated_at = now()"
            " WHERE destination = $1 AND log_id = $2"
            " AND (owner IS NULL OR owner = $3 OR lease_until < now())"
            " RETURNING next_idx, generation",
            destination.name,
            log_id,
            owner,
            lease,
        )
    return None if row is None else Claim(log_id, int(row["next_idx"]), int(row["generation"]))


async def advance(
    pool: asyncpg.Pool,
    destination: str,
    claim: Claim,
    owner: str,
    lease: float,
    next_idx: int,
    dead: Sequence[tuple[Record, str]] = (),
) -> Claim | None:
    """Move the cursor to ``next_idx`` (and record ``dead`` letters) in one transaction, if it
    is still ours where we left it; the new claim, or None when it is not (let it go)."""
    async with pool.acquire() as conn, conn.transaction():
        moved = await conn.fetchval(
            "UPDATE forward_cursors SET next_idx = $5, delivered_at = now(), updated_at = now(),"
            " lease_until = now() + make_interval(secs => $6)"
            " WHERE destination = $1 AND log_id = $2 AND owner = $3 AND next_idx = $4"
            " AND generation = $7 RETURNING true",
            destination,
            claim.log_id,
            owner,
            claim.next_idx,
            next_idx,
            lease,
            claim.generation,
        )
        if not moved:
            return None
        if dead:
            await conn.executemany(
                "INSERT INTO forward_dead_letters (destination, log_id, idx, event_hash, reason)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                [(destination, r.log_id, r.index, r.event_hash, why[:1000]) for r, why in dead],
            )
    return Claim(claim.log_id, next_idx, claim.generation)


async def release(
    pool: asyncpg.Pool, destination: str, owner: str, log_id: str | None = None
) -> None:
    """Give up this process's leases of a destination (in one log, or all), so that another
    process takes them over at once: at a clean stop, or when the work was shared anew."""
    await pool.execute(
        "UPDATE forward_cursors SET owner = NULL, lease_until = NULL"
        " WHERE destination = $1 AND owner = $2 AND ($3::text IS NULL OR log_id = $3)",
        destination,
        owner,
        log_id,
    )


async def heartbeat(pool: asyncpg.Pool, owner: str, lease: float) -> list[str]:
    """Note this process alive; every process alive (seen within ``lease``), sorted."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO forward_workers (owner) VALUES ($1)"
            " ON CONFLICT (owner) DO UPDATE SET seen_at = now()",
            owner,
        )
        await conn.execute(
            "DELETE FROM forward_workers WHERE seen_at < now() - make_interval(secs => $1)",
            lease * 10,
        )
        rows = await conn.fetch(
            "SELECT owner FROM forward_workers"
            " WHERE seen_at >= now() - make_interval(secs => $1) ORDER BY owner",
            lease,
        )
    return [r["owner"] for r in rows]


async def leave(pool: asyncpg.Pool, owner: str) -> None:
    await pool.execute("DELETE FROM forward_workers WHERE owner = $1", owner)


# -- what operators do (auditlog forward pause|resume|replay|status|forget) ---------------------
async def set_paused(pool: asyncpg.Pool, name: str, pause: bool) -> bool:
    """Pause or resume a destination; False when no forwarder ever knew it."""
    done = await pool.fetchval(
        "UPDATE forward_destinations SET paused = $2,"
        " paused_at = CASE WHEN $2 THEN now() END WHERE name = $1 RETURNING true",
        name,
        pause,
    )
    return bool(done)


async def replay(
    pool: asyncpg.Pool,
    name: str,
    *,
    index: int | None = None,
    since: datetime | None = None,
    log_id: str | None = None,
) -> list[tuple[str, int]]:
    """Move a destination's cursors back (or forward) to ``index``, or to the first entry
    received at or after ``since``, in every log or one; (log, new index) of each moved."""
    if (index is None) == (since is None):
        raise ValueError("replay from an index or from a time, not both")
    if index is not None:
        target = "$3::bigint"
        arg: int | datetime = index
    else:
        # The first entry received at or after the time; a log with none: its head.
        target = (
            "coalesce((SELECT min(e.idx) FROM events e WHERE e.log_id = c.log_id"
            " AND e.received_at >= $3::timestamptz), l.size)"
        )
        arg = since  # type: ignore[assignment]
    rows = await pool.fetch(
        f"UPDATE forward_cursors c SET next_idx = least({target}, l.size),"  # noqa: S608
        " generation = c.generation + 1, updated_at = now()"
        " FROM logs l WHERE l.log_id = c.log_id AND c.destination = $1"
        " AND ($2::text IS NULL OR c.log_id = $2) RETURNING c.log_id, c.next_idx",
        name,
        log_id,
        arg,
    )
    return sorted((r["log_id"], int(r["next_idx"])) for r in rows)


async def status(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """One row per destination and log: paused, cursor, log size, lag, last delivery, dead
    letters; destinations with no cursor yet have one row with a NULL log."""
    return await pool.fetch(
        "SELECT d.name, d.kind, d.paused, c.log_id, c.next_idx, l.size,"
        " l.size - c.next_idx AS lag, c.delivered_at, c.owner,"
        " (SELECT count(*) FROM forward_dead_letters x WHERE x.destination = d.name"
        "  AND x.log_id = c.log_id) AS dead_letters"
        " FROM forward_destinations d LEFT JOIN forward_cursors c ON c.destination = d.name"
        " LEFT JOIN logs l ON l.log_id = c.log_id ORDER BY d.name, c.log_id"
    )


async def forget(pool: asyncpg.Pool, name: str) -> bool:
    """Remove a destination, its cursors and dead letters (retention stops waiting for it)."""
    return bool(
        await pool.fetchval("DELETE FROM forward_destinations WHERE name = $1 RETURNING true", name)
    )
