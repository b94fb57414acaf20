"""What a sealable record becomes in PostgreSQL, worked out while its batch fills.

A record's ``events`` row (but for its log and index, which only its seal knows), its log entry
and its leaf hash depend on the record alone. The fetch loop computes them as it decodes
(:func:`prepare`): a record waits up to the batch age for its batch to close anyway, whereas
whatever is left for the seal lies between a batch closing and its commit, inside the
transaction, on the latency every event sees. The seal then only numbers the rows, inline:
``(log_id, index, *prepared.tail)`` in sealer/store.py (a function per row, which looked up the
preparation again, cost 0.2 µs more per event). The search blocks' keys are not prepared per
record: found for a whole block at once from the rows' text (auditlog.core.search_keys.block_keys),
they cost ~8 µs per event against ~11 as per-record token lists joined at the seal.
"""

from __future__ import annotations

from typing import cast

from auditlog.core.columns import TEXT_COLUMNS, searchable_values
from auditlog.core.entry import entry_and_leaf
from auditlog.core.hashing import LogHasher
from auditlog.core.search_keys import blocks
from auditlog.pg.search_blocks import block_row
from sealer.records import Prepared, Sealable

EVENT_COLUMNS = [
    "log_id", "idx", "event_hash", "envelope", "received_at", "kafka_offset",
    *(column for column, _ in TEXT_COLUMNS), "event_time", "idempotency_key", "config_id",
]  # fmt: skip
# Where a row's text columns sit in a preparation's tail (after hash, envelope, time, offset).
_TEXT = slice(4, 4 + len(TEXT_COLUMNS))


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
    return Prepared(hasher.name, leaf, entry, tail)


def prepared(item: Sealable, hasher: LogHasher) -> Prepared:
    """``item``'s preparation for ``hasher``'s logs: the fetch loop's, or made now."""
    done = item.prepared
    if done is not None and done.scheme == hasher.name:
        return done
    return prepare(item, hasher)


def block_rows(log_id: str, first: int, ready: list[Prepared]) -> list[tuple[object, ...]]:
    """``search_blocks`` rows for entries ``first ..`` made of ``ready``, from their rows' text
    columns (auditlog.pg.search_blocks.block_row)."""
    rows = []
    for offset, length in blocks(first, len(ready)):
        chunk = ready[offset : offset + length]
        start = first + offset
        # received_at, in the pool's integer form (sealer/timestamps.py)
        received = [cast(int, p.tail[2]) for p in chunk]
        row = block_row(log_id, start, start + length - 1, received, [p.tail[_TEXT] for p in chunk])
        if row is not None:
            rows.append(row)
    return rows
