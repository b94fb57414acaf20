"""Sealed events as search results: read by key, rendered in Pangea's SearchEvent shape.

The envelope goes out as its stored canonical bytes, spliced into the response unparsed, so the
client hashes exactly what was sealed (no float, big-integer or escape rewriting on the way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson

from query.proofs import ProofBuilder
from query.snapshot import Snapshot

Key = tuple[str, int, datetime]  # (log_id, idx, received_at): the events primary key


_FETCH: Final = (
    "SELECT log_id, idx, event_hash, envelope FROM ("
    "  SELECT k.ord, e.log_id, e.idx, e.event_hash, e.envelope,"
    "    sum(octet_length(e.envelope) + $5::bigint) OVER w AS upto,"
    "    row_number() OVER w AS n"
    "  FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) WITH ORDINALITY"
    "    AS k(log_id, idx, received_at, ord)"
    "  JOIN events e"
    "    ON e.log_id = k.log_id AND e.idx = k.idx AND e.received_at = k.received_at"
    "  WHERE e.received_at BETWEEN $6 AND $7 AND e.log_id = ANY($8::text[])"
    "  WINDOW w AS (ORDER BY k.ord)"
    ") page WHERE $4::bigint IS NULL OR upto <= $4 OR n = 1"
    " ORDER BY ord"
)


@dataclass(frozen=True, slots=True)
class SealedEvent:
    log_id: str
    idx: int
    event_hash: bytes
    envelope: bytes  # canonical bytes, as hashed


# The JSON a page holds per event besides its envelope and log id: hash, leaf index, keys and
# punctuation (up to 130 bytes; a bound). A Pangea membership proof adds PROOF_BYTES and
# PROOF_ITEM_BYTES a tree level.
EVENT_OVERHEAD_BYTES: Final = 160
PROOF_BYTES: Final = len(',"membership_proof":"","published":true')
PROOF_ITEM_BYTES: Final = len("l:") + 64 + len(",")


def overhead_bytes(snapshot: Snapshot, verbose: bool) -> int:
    """What one rendered event of ``snapshot`` holds besides its envelope, at most."""
    log_id = max((len(h.log_id) for h in snapshot.heads), default=0)
    head = snapshot.pangea
    proof = 0
    if verbose and head is not None:
        proof = PROOF_BYTES + PROOF_ITEM_BYTES * head.size.bit_length()
    return EVENT_OVERHEAD_BYTES + log_id + proof


async def fetch(
    conn: asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    keys: Sequence[Key],
    *,
    max_bytes: int | None = None,
    overhead: int = EVENT_OVERHEAD_BYTES,
) -> list[SealedEvent]:
    """The events behind ``keys``, in the same order.

    With ``max_bytes``, only the first events whose envelopes (plus ``overhead`` each) fit in
    that many bytes, and always the first: PostgreSQL sums the stored sizes (without reading
    the envelopes) and sends only the envelopes that fit, so a page of large events never
    comes into this process whole. The caller goes on from ``keys[consumed(keys, result):]``.
    Read in a transaction of its own (a savepoint inside the caller's, whose plan_cache_mode
    it then sets for the rest of it).
    """
    if not keys:
        return []
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as connection:
            return await fetch(connection, keys, max_bytes=max_bytes, overhead=overhead)
    times = [k[2] for k in keys]
    async with conn.transaction():
        # The keys' months and logs as constants of the plan, so that PostgreSQL plans (and
        # locks) only their partitions of events: joined to the keys alone, it planned every
        # one, 7,409 locks and ~0.5 s for one event at 48 logs x 24 months
        # (docs/performance.md, P5); a generic plan would have them all again.
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await conn.fetch(_FETCH, [k[0] for k in keys], [k[1] for k in keys], times,
                                max_bytes, overhead, min(times), max(times),
                                sorted({k[0] for k in keys}))  # fmt: skip
    return [
        SealedEvent(r["log_id"], r["idx"], bytes(r["event_hash"]), bytes(r["envelope"]))
        for r in rows
    ]


def consumed(keys: Sequence[Key], found: Sequence[SealedEvent]) -> int:
    """How many of ``keys`` a :func:`fetch` of them that returned ``found`` covered: the
    position after the last event returned (a key without a row, which a sealed log never has,
    is passed over rather than asked for again)."""
    if not found:
        return 0
    last = found[-1]
    for position in range(len(found) - 1, len(keys)):
        if keys[position][0] == last.log_id and keys[position][1] == last.idx:
            return position + 1
    return len(keys)


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
