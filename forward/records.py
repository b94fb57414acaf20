"""A sealed event as the forwarder delivers it, read from ``events`` in index order.

Every destination gets the same facts: the log, the entry's index, the event hash (sha256 of
the canonical envelope: the receiver's dedup key) and the received time, with the envelope
exactly as sealed. JSON destinations embed the envelope's stored bytes as they are
(:func:`json_record`), so ``sha256`` of the canonical form of ``envelope`` is ``hash``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg
import orjson

from auditlog.core.search_query import Expr, FieldValue, matches

# The columns :func:`read_batch` reads: the entry, and the searchable copies a filter looks at.
_COLUMNS: Final = (
    "idx, event_hash, envelope, received_at, tenant_id, actor, action, target, status,"
    " source, message, new_value, old_value, event_time"
)


@dataclass(frozen=True, slots=True)
class Record:
    log_id: str
    index: int
    event_hash: bytes
    envelope: bytes  # the canonical envelope, byte for byte as hashed
    received_at: datetime
    fields: dict[str, FieldValue]  # what a search query reads (auditlog/core/search_query.py)
    receipt: str | None = None  # its c2sp.org/tlog-proof@v1 receipt, when the destination asks

    @property
    def hash_hex(self) -> str:
        return self.event_hash.hex()

    @property
    def received_text(self) -> str:
        """The received time as the envelope spells it (microseconds, ``Z``)."""
        return self.received_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(log_id: str, row: asyncpg.Record) -> Record:
    fields: dict[str, FieldValue] = {
        "tenant_id": row["tenant_id"],
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "status": row["status"],
        "source": row["source"],
        "message": row["message"],
        "new": row["new_value"],
        "old": row["old_value"],
        "received_at": row["received_at"],
        "timestamp": row["event_time"],
    }
    return Record(
        log_id,
        row["idx"],
        bytes(row["event_hash"]),
        bytes(row["envelope"]),
        row["received_at"],
        fields,
    )


async def read_batch(
    conn: asyncpg.Connection | asyncpg.Pool, log_id: str, start: int, limit: int
) -> tuple[list[Record], int]:
    """Up to ``limit`` entries of ``log_id`` from index ``start`` on, and the log's size.

    One statement, so one snapshot: only sealed entries have rows, and every index below the
    size read with them is there (one writer per log appends whole batches).
    """
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, (SELECT size FROM logs WHERE log_id = $1) AS log_size"  # noqa: S608
        " FROM events WHERE log_id = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
        log_id,
        start,
        limit,
    )
    if not rows:
        size = await conn.fetchval("SELECT size FROM logs WHERE log_id = $1", log_id)
        return [], int(size or 0)
    # Retention or an erasure may have removed entries: a gap is the operator's decision,
    # delivered around, never waited on.
    records = [_record(log_id, row) for row in rows]
    return records, int(rows[0]["log_size"])


@dataclass(frozen=True, slots=True)
class Filter:
    """Which events a destination receives: its tenants (empty: all) and a search query."""

    tenants: frozenset[str] = frozenset()
    query: Expr | None = None
    query_text: str = ""

    def admits(self, record: Record) -> bool:
        if self.tenants and record.fields["tenant_id"] not in self.tenants:
            return False
        return matches(self.query, record.fields)


def json_record(record: Record) -> bytes:
    """One event as a JSON object: ``log``, ``index``, ``hash``, ``received_at``, the
    envelope (its stored bytes spliced in unchanged) and, when asked for, its ``receipt``."""
    out = {
        "log": record.log_id,
        "index": record.index,
        "hash": record.hash_hex,
        "received_at": record.received_text,
        "envelope": orjson.Fragment(record.envelope),
    }
    if record.receipt is not None:
        out["receipt"] = record.receipt
    return orjson.dumps(out)
