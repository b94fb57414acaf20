"""The search-block index's rows for entries already sealed: coverage and backfill.

The sealer writes a seal's blocks in its transaction (sealer/rows.py). Entries sealed before
migration 0007 have none; ``search_coverage`` says, per log, below which index that is, and
search reads those entries whole until :func:`backfill` writes their blocks. The backfill goes
down from that index in chunks, each chunk's blocks and the lowered bound in one transaction,
so it can be stopped and run again at any point, while the sealers run (they write only above).

The blocks' key index is GIN with fast update: a new row's keys go to the index's pending list, and
the list is merged into the index's tree in bulk. PostgreSQL merges it in the session whose insert
finds it past ``gin_pending_list_limit`` (4 MB), inside that session's transaction; with realistic
events (~125 bytes of pending list each) that is a seal every ~3 s at 10k events/s, which then
spends most of a second merging while its partition waits. :func:`merge_pending` merges it on
purpose, from a session of its own that holds the merge lock (:func:`lead_merges`;
sealer/index_merge.py merges every half second).
"""

from __future__ import annotations

import itertools
import struct
import sys
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import asyncpg

from auditlog.core.columns import TEXT_COLUMNS
from auditlog.core.search_keys import BLOCK_SIZE, block_keys
from auditlog.pg.search_generations import index_name

__all__ = [
    "BLOCK_COLUMNS",
    "backfill",
    "block_row",
    "block_rows",
    "copy_blocks",
    "encode_blocks",
    "lead_merges",
    "merge_pending",
    "stored_block_rows",
    "uncovered",
]

BLOCK_COLUMNS: Final = ("log_id", "first_idx", "last_idx", "first_at", "last_at", "keys")
_TEXT: Final = ", ".join(column for column, _ in TEXT_COLUMNS)
# Blocks per backfill transaction.
_CHUNK_BLOCKS: Final = 64

# PostgreSQL's binary COPY format: the signature, no flags, no header extension; -1 fields ends.
_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER: Final = struct.pack(">h", -1)
# A row's fixed part after log_id: first_idx, last_idx, first_at, last_at, each 8 bytes long,
# then the keys' length and the array's header (one dimension, no NULLs, of int4: OID 23).
_ROW_MIDDLE: Final = struct.Struct(">iqiqiqiqiiiIii")
_INT4_OID: Final = 23
_TIMESTAMP_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_SWAP: Final = sys.byteorder == "little"
# array's type code for a 32-bit integer ('i' on every platform CPython supports today).
_INT32: Final = next(code for code in "ihl" if array(code).itemsize == 4)


def block_row(
    log_id: str,
    first: int,
    last: int,
    received: Sequence[Any],
    searchable: Sequence[Sequence[object]],
) -> tuple[object, ...] | None:
    """The ``search_blocks`` row (:data:`BLOCK_COLUMNS`) of entries ``first .. last``, whose
    searchable values (TEXT_COLUMNS order) are ``searchable``, or None when they hold no token
    at all: no value with a whole token can match them."""
    keys = block_keys(searchable)
    if not keys:
        return None
    return (log_id, first, last, min(received), max(received), keys)


def block_rows(log_id: str, events: Sequence[Sequence[Any]]) -> list[tuple[object, ...]]:
    """``search_blocks`` rows for ``events``: ``(idx, received_at, *text columns)`` in idx order,
    grouped into the blocks the sealer would have made (aligned to BLOCK_SIZE within the log)."""
    rows = []
    for _, group in itertools.groupby(events, key=lambda e: e[0] // BLOCK_SIZE):
        chunk = list(group)
        received = [e[1] for e in chunk]
        row = block_row(log_id, chunk[0][0], chunk[-1][0], received, [e[2:] for e in chunk])
        if row is not None:
            rows.append(row)
    return rows


async def stored_block_rows(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, log_id: str, first: int, last: int
) -> list[tuple[object, ...]]:
    """The blocks of ``log_id``'s entries ``first .. last`` (both included) still stored in
    ``events``, made from their rows as :func:`block_rows` makes them."""
    events = await conn.fetch(
        f"SELECT idx, received_at, {_TEXT} FROM events"  # noqa: S608
        " WHERE log_id = $1 AND idx >= $2 AND idx <= $3 ORDER BY idx",
        log_id,
        first,
        last,
    )
    return block_rows(log_id, [tuple(e) for e in events])


def _micros(value: int | datetime) -> int:
    # timestamptz on the wire: microseconds since 2000. The sealer's rows carry that integer
    # already (sealer/timestamps.py); rows read back carry aware datetimes.
    if type(value) is int:
        return value
    return (cast(datetime, value) - _TIMESTAMP_EPOCH) // _MICROSECOND


def encode_blocks(rows: Sequence[Sequence[Any]]) -> bytes:
    """``rows`` (:data:`BLOCK_COLUMNS`; times as aware datetimes or as microseconds since 2000)
    in PostgreSQL's binary COPY format.

    asyncpg's own encoder asks, of every element of an ``integer[]``, whether it is a nested
    sequence (an ``isinstance`` against ``collections.abc``'s classes), which made the blocks'
    keys, ~20 per event, dearer to send than the whole events row. Here an array is two C-level
    slice assignments."""
    out = [_COPY_HEADER]
    for log_id, first, last, first_at, last_at, keys in rows:
        name = log_id.encode()
        count = len(keys)
        body = array(_INT32, bytes(8 * count))
        body[0::2] = array(_INT32, [4]) * count  # each element's length, then the element
        body[1::2] = array(_INT32, keys)
        if _SWAP:
            body.byteswap()
        middle = _ROW_MIDDLE.pack(
            8, first, 8, last, 8, _micros(first_at), 8, _micros(last_at),
            20 + 8 * count, 1, 0, _INT4_OID, count, 1,
        )  # fmt: skip
        out += (struct.pack(">hi", 6, len(name)), name, middle, body.tobytes())
    out.append(_COPY_TRAILER)
    return b"".join(out)


async def copy_blocks(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    rows: Sequence[Sequence[Any]],
    *,
    table: str = "search_blocks",
    schema_name: str | None = None,
) -> None:
    """Write ``rows`` (:data:`BLOCK_COLUMNS`) into ``search_blocks`` (or a table of its
    shape: the benchmarks'), in one binary COPY."""
    if rows:
        await conn.copy_to_table(
            table, schema_name=schema_name, source=_once(encode_blocks(rows)),
            columns=list(BLOCK_COLUMNS), format="binary",
        )  # fmt: skip


async def _once(data: bytes) -> AsyncIterator[bytes]:
    # asyncpg reads a file-like source in an executor thread; an async iterable it reads inline.
    yield data


async def uncovered(conn: asyncpg.Connection) -> dict[str, int]:
    """Log -> how many of its first entries have no blocks yet (logs with none missing left out)."""
    rows = await conn.fetch("SELECT log_id, below FROM search_coverage WHERE below > 0")
    return {r["log_id"]: r["below"] for r in rows}


async def backfill(conn: asyncpg.Connection, report: Callable[[str], None] = print) -> int:
    """Write the blocks of every entry sealed without them; returns how many entries it covered."""
    covered = 0
    for log_id, missing in sorted((await uncovered(conn)).items()):
        report(f"{log_id}: {missing} entries without search blocks")
        below = missing
        while below > 0:
            low = max(0, (below - 1) // BLOCK_SIZE * BLOCK_SIZE - (_CHUNK_BLOCKS - 1) * BLOCK_SIZE)
            async with conn.transaction():
                await copy_blocks(conn, await stored_block_rows(conn, log_id, low, below - 1))
                await conn.execute(
                    "UPDATE search_coverage SET below = $2 WHERE log_id = $1", log_id, low
                )
            covered += below - low
            below = low
        await conn.execute("DELETE FROM search_coverage WHERE log_id = $1 AND below = 0", log_id)
        report(f"{log_id}: covered")
    return covered


# The session holding this advisory lock is the one that merges (sealer/index_merge.py): sessions
# merging at once would queue behind each other's merge for nothing.
MERGE_LOCK_ID: Final = int.from_bytes(b"srchmerg", "big")


async def lead_merges(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> bool:
    """Whether this session now holds the merge lock (it keeps it until it ends or unlocks)."""
    led: bool = await conn.fetchval("SELECT pg_try_advisory_lock($1)", MERGE_LOCK_ID)
    return led


async def merge_pending(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> int:
    """Merge the pending lists of the two newest generations' block indexes into their trees now
    (the previous one takes the seals that began before the newest opened); the pending pages
    merged. Needs the indexes' owner (the role that migrated); a generation's index that is gone
    raises UndefinedTableError."""
    merged = 0
    for generation in await conn.fetch(
        "SELECT generation FROM search_generations ORDER BY generation DESC LIMIT 2"
    ):
        merged += await conn.fetchval(
            "SELECT gin_clean_pending_list($1::text::regclass)", index_name(generation[0])
        )
    return merged
