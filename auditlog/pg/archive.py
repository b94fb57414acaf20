"""Writing an archive of a range of one log (``auditlog archive``; the format is in
:mod:`auditlog.core.archive`).

Everything is read in one read-only REPEATABLE READ transaction, so the checkpoint, the subtree
hashes and the entries agree although the sealer writes meanwhile. Entries are streamed to the
file a block at a time; the archive is recorded in ``archives`` (with the file's sha256) once it
is complete, which is what a policy that requires an archive before pruning looks for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO

import asyncpg

from auditlog.core.archive import (
    archive_header,
    archive_nodes,
    archive_tiles,
    entry_line,
    trailer_line,
)
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.hashing import get_hasher
from auditlog.core.note import parse_note
from auditlog.pg.db import fetch_tiles

__all__ = ["ArchiveRefused", "ArchiveWritten", "write_archive"]

_BLOCK = 16_384
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class ArchiveRefused(Exception):  # noqa: N818 - reads as the outcome
    """The range cannot be archived (no such log, out of range, entries already gone)."""


@dataclass(frozen=True, slots=True)
class ArchiveWritten:
    log_id: str
    first: int
    end: int
    size: int
    sha256: str
    erased: int


class _Hashing:
    def __init__(self, out: BinaryIO) -> None:
        self.out, self.digest = out, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.digest.update(data)


async def _entries(conn: Conn, log_id: str, lo: int, hi: int, out: _Hashing) -> int:
    rows = await conn.fetch(
        "SELECT idx, envelope FROM events WHERE log_id = $1 AND idx >= $2 AND idx < $3"
        " ORDER BY idx",
        log_id,
        lo,
        hi,
    )
    erasures = {
        r["idx"]: r["note"]
        for r in await conn.fetch(
            "SELECT idx, note FROM erasures WHERE log_id = $1 AND idx >= $2 AND idx < $3",
            log_id,
            lo,
            hi,
        )
    }
    envelopes = {r["idx"]: bytes(r["envelope"]) for r in rows}
    for index in range(lo, hi):
        if index in envelopes:
            out.write(entry_line(index, envelope=envelopes[index]))
        elif index in erasures:
            out.write(entry_line(index, erasure=erasures[index]))
        else:
            raise ArchiveRefused(f"{log_id} entry {index} is not stored (pruned?): cannot archive")
    return len(erasures)


async def write_archive(
    conn: Conn,
    log_id: str,
    first: int | None,
    end: int | None,
    out: BinaryIO,
    location: str,
) -> ArchiveWritten:
    """Write the archive of ``[first, end)`` (default: from the pruned bound to the head)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        log = await conn.fetchrow(
            "SELECT origin, hash_scheme, checkpoint FROM logs WHERE log_id = $1", log_id
        )
        if log is None or log["checkpoint"] is None:
            raise ArchiveRefused(f"no log {log_id} with a checkpoint")
        cp = Checkpoint.from_text(parse_note(log["checkpoint"]).text)
        pruned = await conn.fetchrow(
            "SELECT below, note FROM pruned_bounds WHERE log_id = $1 ORDER BY below DESC LIMIT 1",
            log_id,
        )
        lo = first if first is not None else (pruned["below"] if pruned else 0)
        hi = end if end is not None else cp.size
        if not 0 <= lo <= hi <= cp.size:
            raise ArchiveRefused(f"range [{lo}, {hi}) is not within the log's size {cp.size}")
        tiles = await fetch_tiles(conn, log_id, archive_tiles(lo, hi, cp.size))
        left, right = archive_nodes(get_hasher(log["hash_scheme"]), lo, hi, cp.size, tiles)
        sink = _Hashing(out)
        sink.write(
            archive_header(
                origin=log["origin"],
                log=log_id,
                hash_scheme=log["hash_scheme"],
                first=lo,
                end=hi,
                checkpoint=log["checkpoint"],
                left=left,
                right=right,
                pruned=pruned["note"] if pruned else None,
            )
        )
        erased = 0
        for block in range(lo, hi, _BLOCK):
            erased += await _entries(conn, log_id, block, min(block + _BLOCK, hi), sink)
        sink.write(trailer_line(hi - lo))
    digest = sink.digest.digest()
    await conn.execute(
        "INSERT INTO archives (log_id, first_idx, end_idx, size, sha256, location)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (log_id, first_idx, end_idx, size)"
        " DO UPDATE SET sha256 = excluded.sha256, location = excluded.location",
        log_id,
        lo,
        hi,
        cp.size,
        digest,
        location,
    )
    return ArchiveWritten(log_id, lo, hi, cp.size, digest.hex(), erased)
