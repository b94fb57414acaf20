"""Sealed events as search results: read by key, rendered in Pangea's SearchEvent shape.

The envelope goes out as its stored canonical bytes, spliced into the response unparsed, so the
client hashes exactly what was sealed (no float, big-integer or escape rewriting on the way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from query.proofs import ProofBuilder
from query.snapshot import Snapshot

Key = tuple[str, int, datetime]  # (log_id, idx, received_at): the events primary key


@dataclass(frozen=True, slots=True)
class SealedEvent:
    log_id: str
    idx: int
    event_hash: bytes
    envelope: bytes  # canonical bytes, as hashed


async def fetch(conn: asyncpg.Pool | asyncpg.Connection, keys: Sequence[Key]) -> list[SealedEvent]:
    """The events behind ``keys``, in the same order."""
    if not keys:
        return []
    rows = await conn.fetch(
        "SELECT e.log_id, e.idx, e.event_hash, e.envelope"
        " FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) WITH ORDINALITY"
        "   AS k(log_id, idx, received_at, ord)"
        " JOIN events e ON e.log_id = k.log_id AND e.idx = k.idx AND e.received_at = k.received_at"
        " ORDER BY k.ord",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    return [
        SealedEvent(r["log_id"], r["idx"], bytes(r["event_hash"]), bytes(r["envelope"]))
        for r in rows
    ]


async def render(
    events: Sequence[SealedEvent], snapshot: Snapshot, verbose: bool, proofs: ProofBuilder
) -> list[dict[str, Any]]:
    """SearchEvent objects; verbose ones on a Pangea-verifiable snapshot carry proofs."""
    out: list[dict[str, Any]] = [
        {
            "envelope": orjson.Fragment(e.envelope),
            "hash": e.event_hash.hex(),
            "log": e.log_id,
            "leaf_index": e.idx,
        }
        for e in events
    ]
    head = snapshot.pangea
    if verbose and head is not None and events:
        memberships = await proofs.pangea_memberships(head, [e.idx for e in events])
        for item, proof in zip(out, memberships, strict=True):
            item["membership_proof"] = proof
            item["published"] = True
    return out
