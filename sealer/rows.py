"""What a sealable record becomes in PostgreSQL, worked out while its batch fills.

A record's ``events`` row (but for its log and index, which only its seal knows), its log entry
and its leaf hash depend on the record alone. The fetch loop computes them as it decodes
(:func:`prepare`): a record waits up to the batch age for its batch to close anyway, whereas
whatever is left for the seal lies between a batch closing and its commit, inside the
transaction, on the latency every event sees. The seal then only numbers the rows, inline:
``(log_id, index, *prepared.tail)`` in sealer/store.py (a function per row, which looked up the
preparation again, cost 0.2 µs more per event). Its search tokens too: the seal only joins
them into its blocks' keys.
"""

from __future__ import annotations

from typing import cast

from auditlog.core.columns import TEXT_COLUMNS, searchable_values
from auditlog.core.entry import entry_and_leaf
from auditlog.core.hashing import LogHasher
from auditlog.core.search_keys import blocks, tokens
from auditlog.pg.search_blocks import block_row
from sealer.records import Prepared, Sealable

EVENT_COLUMNS = [
    "log_id", "idx", "event_hash", "envelope", "received_at", "kafka_offset",
    *(column for column, _ in TEXT_COLUMNS), "event_time", "idempotency_key", "config_id",
]  # fmt: skip


def prepare(item: Sealable, hasher: LogHasher) -> Prepared:
    envelope = item.envelope
    canonical = envelope.canonical
    entry, leaf = entry_and_leaf(hasher, canonical)
    searchable = searchable_values(envelope.event)
    tail = (
        envelope.event_hash,
        canonical,
        item.received_us,
        item.offset,
        *searchable,
        item.idempotency_key,
        item.config_id,
    )
    # event_time, the last searchable value, is no text: tokens() skips it.
    return Prepared(hasher.name, leaf, entry, tail, tokens(searchable))


def prepared(item: Sealable, hasher: LogHasher) -> Prepared:
    """``item``'s preparation for ``hasher``'s logs: the fetch loop's, or made now."""
    done = item.prepared
    if done is not None and done.scheme == hasher.name:
        return done
    return prepare(item, hasher)


def block_rows(log_id: str, first: int, ready: list[Prepared]) -> list[tuple[object, ...]]:
    """``search_blocks`` rows for entries ``first ..`` made of ``ready``, from the tokens the
    fetch loop found (auditlog.pg.search_blocks.block_row)."""
    rows = []
    for offset, length in blocks(first, len(ready)):
        chunk = ready[offset : offset + length]
        start = first + offset
        # received_at, in the pool's integer form (sealer/timestamps.py)
        received = [cast(int, p.tail[2]) for p in chunk]
        row = block_row(log_id, start, start + length - 1, received, [p.tokens for p in chunk])
        if row is not None:
            rows.append(row)
    return rows
