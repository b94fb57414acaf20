"""Receipts attached to forwarded events (a destination's ``receipts = true``).

Each event gets the same ``c2sp.org/tlog-proof@v1`` receipt the query service would serve for
it (``GET /v1/receipts/{hash}``): its inclusion proof in the log against the log's latest
signed checkpoint, so the receiver can verify it offline with the log's public key and
nothing else (``auditlog verify receipt``). Proofs are built from tiles, which only ever grow
by appending: tiles read after the log's head hold every hash a proof at that head needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from auditlog.core.hashing import get_hasher
from auditlog.core.proof import Node, inclusion_proof, inclusion_tiles
from auditlog.core.receipt import Receipt
from auditlog.pg.db import fetch_tiles
from forward.records import Record


async def with_receipts(pool: asyncpg.Pool, log_id: str, records: Sequence[Record]) -> list[Record]:
    """``records`` (of ``log_id``, all sealed) each with its receipt."""
    if not records:
        return []
    head = await pool.fetchrow(
        "SELECT size, checkpoint, hash_scheme FROM logs WHERE log_id = $1", log_id
    )
    if head is None or head["checkpoint"] is None:
        raise AssertionError(f"logic error: sealed entries of {log_id} without a checkpoint")
    size, checkpoint = int(head["size"]), str(head["checkpoint"])
    hasher = get_hasher(head["hash_scheme"])
    wanted = list(dict.fromkeys(t for r in records for t in inclusion_tiles(r.index, size)))
    tiles = await fetch_tiles(pool, log_id, wanted)
    cache: dict[Node, bytes] = {}
    return [
        dataclasses.replace(
            r,
            receipt=Receipt(
                r.index, tuple(inclusion_proof(hasher, r.index, size, tiles, cache)), checkpoint
            ).to_text(),
        )
        for r in records
    ]
