"""The auditor's PostgreSQL edge: feeds :class:`auditlog.core.audit.LogAuditor` from the tables.

Everything is read in one read-only REPEATABLE READ transaction, so a sealer writing meanwhile
cannot make the head, the checkpoints, the rows and the tiles disagree with each other by being
read at different moments. Rows, level-0 tiles and bundles are read a block of chunks at a time
by index range (the ``(log_id, idx)`` index), so memory is bounded by the block, not the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import asyncpg

from auditlog.core.audit import (
    COLUMN_NAMES,
    AuditedLog,
    LogAuditor,
    StoredCheckpoint,
    StoredEvent,
    StoredHead,
    StoredStatements,
)
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteVerifier
from auditlog.core.tiles import TILE_WIDTH, TileID
from auditlog.pg.db import fetch_tiles
from auditlog.verify.audit_state import (
    AuditRun,
    audit_run,
    check_requested,
    remembered_history,
    remembered_pruned,
)
from auditlog.verify.trust_state import ListedLog, TrustState, reconcile

__all__ = ["BLOCK_CHUNKS", "Progress", "audit_database"]

# 64 chunks of 256 entries: ~16k rows per query, a few MB of envelopes at most.
BLOCK_CHUNKS = 64
Progress = Callable[[str, int, int], None]

# Built from the fixed tuple COLUMN_NAMES only; values always travel as parameters.
_ROW_SELECT = "SELECT idx, event_hash, envelope, " + ", ".join(COLUMN_NAMES) + " FROM events"  # noqa: S608
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def _event(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        row["idx"],
        bytes(row["event_hash"]),
        bytes(row["envelope"]),
        {name: row[name] for name in COLUMN_NAMES},
    )


async def _tiles(conn: Conn, log_id: str, wanted: Sequence[TileID]) -> dict[TileID, bytes | None]:
    found: dict[TileID, bytes | None] = dict.fromkeys(wanted)
    found.update(await fetch_tiles(conn, log_id, wanted))
    return found


async def _answer_wants(conn: Conn, log_id: str, auditor: LogAuditor) -> None:
    while wanted := auditor.wanted_tiles():
        auditor.add_tiles(await _tiles(conn, log_id, wanted))


async def _audit_log(
    conn: Conn,
    head: StoredHead,
    verifiers: Sequence[NoteVerifier],
    extra_checkpoints: Iterable[StoredCheckpoint],
    remembered: str | None,
    progress: Progress | None,
    max_findings: int,
) -> AuditedLog:
    log_id = head.log_id
    history = [
        StoredCheckpoint(r["note"], r["size"], bytes(r["root"]))
        for r in await conn.fetch(
            "SELECT size, root, note FROM checkpoints WHERE log_id = $1 ORDER BY size", log_id
        )
    ]
    pruned = await conn.fetch(
        "SELECT note FROM pruned_bounds WHERE log_id = $1 ORDER BY size, below", log_id
    )
    erasures = await conn.fetch("SELECT note FROM erasures WHERE log_id = $1 ORDER BY idx", log_id)
    auditor = LogAuditor(
        head,
        get_hasher(head.hash_scheme),
        verifiers,
        [*history, *extra_checkpoints],
        max_findings=max_findings,
        statements=StoredStatements(
            [r["note"] for r in pruned], [r["note"] for r in erasures], remembered
        ),
    )
    size = auditor.expected_size
    chunks = -(-size // TILE_WIDTH)
    for block in range(0, chunks, BLOCK_CHUNKS):
        last = min(block + BLOCK_CHUNKS, chunks)
        lo, hi = block * TILE_WIDTH, min(last * TILE_WIDTH, size)
        rows = await conn.fetch(
            f"{_ROW_SELECT} WHERE log_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx, received_at",
            log_id,
            lo,
            hi,
        )
        tiles = {
            r["idx"]: bytes(r["data"])
            for r in await conn.fetch(
                "SELECT idx, data FROM tiles WHERE log_id = $1 AND level = 0"
                " AND idx >= $2 AND idx < $3",
                log_id,
                block,
                last,
            )
        }
        bundles = {
            r["idx"]: bytes(r["data"])
            for r in await conn.fetch(
                "SELECT idx, data FROM bundles WHERE log_id = $1 AND idx >= $2 AND idx < $3",
                log_id,
                block,
                last,
            )
        }
        by_chunk: dict[int, list[StoredEvent]] = {}
        for row in rows:
            by_chunk.setdefault(row["idx"] // TILE_WIDTH, []).append(_event(row))
        for chunk in range(block, last):
            auditor.add_chunk(chunk, by_chunk.get(chunk, []), tiles.get(chunk), bundles.get(chunk))
        await _answer_wants(conn, log_id, auditor)
        if progress is not None:
            progress(log_id, hi, size)
    # Rows outside the signed tree: read in index order through a cursor, there may be many.
    async for row in conn.cursor(
        f"{_ROW_SELECT} WHERE log_id = $1 AND (idx < 0 OR idx >= $2) ORDER BY idx", log_id, size
    ):
        auditor.add_extra_rows([_event(row)])
    auditor.end_of_entries()
    await _answer_wants(conn, log_id, auditor)
    return auditor.finish()


async def audit_database(
    conn: Conn,
    verifiers: Sequence[NoteVerifier],
    *,
    log_ids: Sequence[str] | None = None,
    state: TrustState | None = None,
    progress: Progress | None = None,
    max_findings: int = 10_000,
) -> AuditRun:
    """Audit every log (or ``log_ids``) in the database ``conn`` is connected to.

    ``state`` is the verifier's memory (:mod:`auditlog.verify.trust_state`): a remembered log is
    audited with the hash scheme remembered for it, never the ``logs`` table's, and with its
    remembered checkpoint as signed history, so a log rolled back together with its own
    checkpoint history is caught; a remembered log that is gone, renamed or re-schemed is a
    finding. LookupError for a requested log id that is neither stored nor remembered.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT log_id, origin, hash_scheme, size, root, checkpoint FROM logs ORDER BY log_id"
        )
        listing = [ListedLog(r["log_id"], r["origin"], r["hash_scheme"]) for r in rows]
        check_requested(log_ids, listing, state)
        reconciled = reconcile(state or TrustState(), listing, log_ids)
        results = []
        for r in rows:
            if log_ids and r["log_id"] not in log_ids:
                continue
            head = StoredHead(
                r["log_id"],
                r["origin"],
                reconciled.schemes[r["origin"]],
                r["size"],
                bytes(r["root"]),
                r["checkpoint"],
            )
            history = remembered_history(state, head.origin)
            remembered = remembered_pruned(state, head.origin)
            results.append(
                await _audit_log(conn, head, verifiers, history, remembered, progress, max_findings)
            )
        return audit_run(results, reconciled)
