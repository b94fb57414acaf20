"""The search-block index's rows for entries already sealed: coverage and backfill.

The sealer writes a seal's blocks in its transaction (sealer/rows.py). Entries sealed before
migration 0007 have none; ``search_coverage`` says, per log, below which index that is, and
search reads those entries whole until :func:`backfill` writes their blocks. The backfill goes
down from that index in chunks, each chunk's blocks and the lowered bound in one transaction,
so it can be stopped and run again at any point, while the sealers run (they write only above).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Final

import asyncpg

from auditlog.core.columns import TEXT_COLUMNS
from auditlog.core.search_keys import BLOCK_SIZE, block_keys, tokens

__all__ = ["BLOCK_COLUMNS", "backfill", "block_row", "block_rows", "uncovered"]

BLOCK_COLUMNS: Final = ("log_id", "first_idx", "last_idx", "first_at", "last_at", "keys")
_TEXT: Final = ", ".join(column for column, _ in TEXT_COLUMNS)
# Blocks per backfill transaction.
_CHUNK_BLOCKS: Final = 64


def block_row(
    log_id: str, first: int, last: int, received: Sequence[Any], token_lists: list[list[bytes]]
) -> tuple[object, ...] | None:
    """The ``search_blocks`` row (:data:`BLOCK_COLUMNS`) of entries ``first .. last``, or None
    when they hold no token at all: no value with a whole token can match them."""
    keys = block_keys(token_lists)
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
        row = block_row(log_id, chunk[0][0], chunk[-1][0], received, [tokens(e[2:]) for e in chunk])
        if row is not None:
            rows.append(row)
    return rows


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
                events = await conn.fetch(
                    f"SELECT idx, received_at, {_TEXT} FROM events"  # noqa: S608
                    " WHERE log_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                    log_id,
                    low,
                    below,
                )
                await conn.copy_records_to_table(
                    "search_blocks",
                    columns=list(BLOCK_COLUMNS),
                    records=block_rows(log_id, [tuple(e) for e in events]),
                )
                await conn.execute(
                    "UPDATE search_coverage SET below = $2 WHERE log_id = $1", log_id, low
                )
            covered += below - low
            below = low
        await conn.execute("DELETE FROM search_coverage WHERE log_id = $1 AND below = 0", log_id)
        report(f"{log_id}: covered")
    return covered
