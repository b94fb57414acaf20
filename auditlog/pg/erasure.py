"""Erasing one event's content: the row and its copies go, a signed erasure record stays.

In one transaction: the event row is deleted; its entry in the entry bundle is replaced by a
placeholder naming its leaf (:func:`~auditlog.core.log_statements.erased_entry`); its search
block is rebuilt from the other events of the block; its idempotency key is forgotten; and the
signed erasure record (:class:`~auditlog.core.log_statements.ErasureRecord`) is stored with the
event hash, so the entry's receipt is still served by hash. The leaf stays in the tiles, so no
other receipt and no consistency proof changes. An event whose row does not reproduce its
sealed leaf is refused: erasing it would sign a record for an entry that was never sealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from auditlog.core.entry import leaf_hash
from auditlog.core.hashing import HASH_SIZE, get_hasher
from auditlog.core.log_statements import ErasureRecord, erased_entry, sign_statement
from auditlog.core.note import NoteSigner, parse_note
from auditlog.core.tiles import TILE_WIDTH, TileID, decode_bundle, encode_bundle
from auditlog.pg.db import fetch_tiles
from auditlog.pg.search_blocks import copy_blocks, stored_block_rows

__all__ = ["EraseRefused", "Erasure", "erase_event", "erase_tenant_before"]

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class EraseRefused(Exception):  # noqa: N818 - reads as the outcome
    """The event cannot be erased (not found, ambiguous, or not what was sealed)."""


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erasure done (or found done before): its log and signed record."""

    log_id: str
    record: ErasureRecord
    note: str
    already: bool


async def _rebuild_block(conn: Conn, log_id: str, idx: int) -> None:
    block = await conn.fetchrow(
        "SELECT first_idx, last_idx FROM search_blocks"
        " WHERE log_id = $1 AND first_idx <= $2 AND last_idx >= $2",
        log_id,
        idx,
    )
    if block is None:
        return
    first, last = block["first_idx"], block["last_idx"]
    rows = await stored_block_rows(conn, log_id, first, last)
    await conn.execute(
        "DELETE FROM search_blocks WHERE log_id = $1 AND first_idx = $2", log_id, first
    )
    await copy_blocks(conn, rows)


async def _replace_in_bundle(conn: Conn, log_id: str, idx: int, leaf: bytes) -> None:
    data = await conn.fetchval(
        "SELECT data FROM bundles WHERE log_id = $1 AND idx = $2 FOR UPDATE",
        log_id,
        idx // TILE_WIDTH,
    )
    if data is None:
        return
    entries = decode_bundle(bytes(data))
    pos = idx % TILE_WIDTH
    if pos >= len(entries):
        return
    entries[pos] = erased_entry(leaf)
    await conn.execute(
        "UPDATE bundles SET data = $3 WHERE log_id = $1 AND idx = $2",
        log_id,
        idx // TILE_WIDTH,
        encode_bundle(entries),
    )


async def _already(conn: Conn, event_hash: bytes, log_id: str | None) -> Erasure | None:
    row = await conn.fetchrow(
        "SELECT log_id, note FROM erasures WHERE event_hash = $1"
        " AND ($2::text IS NULL OR log_id = $2) LIMIT 1",
        event_hash,
        log_id,
    )
    if row is None:
        return None
    record = ErasureRecord.from_text(parse_note(row["note"]).text)
    return Erasure(row["log_id"], record, row["note"], already=True)


_ROW = (
    "SELECT e.log_id, e.idx, e.event_hash, e.envelope, e.received_at, e.tenant_id,"
    " l.origin, l.hash_scheme FROM events e JOIN logs l USING (log_id)"
)


async def _erase_row(
    conn: Conn, signer: NoteSigner, row: asyncpg.Record, reason: str, now: datetime
) -> Erasure:
    """Erase one locked event row, inside the caller's transaction."""
    log, idx, event_hash = row["log_id"], row["idx"], bytes(row["event_hash"])
    leaf = leaf_hash(get_hasher(row["hash_scheme"]), bytes(row["envelope"]))
    tile = TileID(0, idx // TILE_WIDTH)
    data = (await fetch_tiles(conn, log, [tile])).get(tile)
    pos = idx % TILE_WIDTH
    sealed = data[pos * HASH_SIZE : (pos + 1) * HASH_SIZE] if data is not None else b""
    if sealed != leaf:
        raise EraseRefused(
            f"{log} index {idx}: the stored event is not the sealed entry (run auditlog"
            " audit); refusing to sign an erasure record for it"
        )
    record = ErasureRecord(
        row["origin"], idx, event_hash, leaf, now.strftime("%Y-%m-%dT%H:%M:%SZ"), reason
    )
    note = sign_statement(record, signer)
    await conn.execute(
        "INSERT INTO erasures (log_id, idx, event_hash, tenant_id, note)"
        " VALUES ($1, $2, $3, $4, $5)",
        log,
        idx,
        event_hash,
        row["tenant_id"],
        note,
    )
    await conn.execute(
        "DELETE FROM events WHERE log_id = $1 AND idx = $2 AND received_at = $3",
        log,
        idx,
        row["received_at"],
    )
    await conn.execute("DELETE FROM idempotency_keys WHERE log_id = $1 AND idx = $2", log, idx)
    await _replace_in_bundle(conn, log, idx, leaf)
    await _rebuild_block(conn, log, idx)
    return Erasure(log, record, note, already=False)


async def erase_event(
    conn: Conn,
    signer: NoteSigner,
    event_hash: bytes,
    reason: str,
    *,
    log_id: str | None = None,
    now: datetime | None = None,
) -> Erasure:
    """Erase the event with ``event_hash`` (in ``log_id``, when several logs hold it)."""
    if len(event_hash) != HASH_SIZE:
        raise EraseRefused("an event hash is 32 bytes (64 hex digits)")
    async with conn.transaction():
        rows = await conn.fetch(
            f"{_ROW} WHERE e.event_hash = $1 AND ($2::text IS NULL OR e.log_id = $2)"
            " FOR UPDATE OF e",
            event_hash,
            log_id,
        )
        if not rows:
            done = await _already(conn, event_hash, log_id)
            if done is not None:
                return done
            raise EraseRefused(f"no event with hash {event_hash.hex()}")
        if len(rows) > 1:
            logs = ", ".join(sorted({f"{r['log_id']}#{r['idx']}" for r in rows}))
            raise EraseRefused(f"several events have this hash ({logs}): name one with --log")
        return await _erase_row(conn, signer, rows[0], reason, now or datetime.now(UTC))


async def erase_tenant_before(
    conn: Conn,
    signer: NoteSigner,
    log_id: str,
    tenant_id: str,
    before: datetime,
    reason: str,
    *,
    batch: int = 500,
) -> int:
    """Erase every event of ``tenant_id`` in ``log_id`` received before ``before``, a batch
    per transaction (so a stop loses at most a batch, and a rerun goes on); how many."""
    done = 0
    while True:
        async with conn.transaction():
            rows = await conn.fetch(
                f"{_ROW} WHERE e.log_id = $1 AND e.tenant_id = $2 AND e.received_at < $3"
                " ORDER BY e.idx LIMIT $4 FOR UPDATE OF e",
                log_id,
                tenant_id,
                before,
                batch,
            )
            now = datetime.now(UTC)
            for row in rows:
                await _erase_row(conn, signer, row, reason, now)
        done += len(rows)
        if len(rows) < batch:
            return done
