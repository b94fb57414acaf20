"""What a search index costs PostgreSQL per sealed event, with realistic events, one design a run.

    .venv/bin/python -m bench.bench_search_cost [--events 100000] [--batch 2000] [--design ...]

Each design gets fresh tables shaped like ``events``' searchable part (the nine text columns, the
keys, the primary key's prefix) in a scratch schema, filled with ``--events`` events from
:mod:`auditlog.loadtest.events` by ``COPY`` in transactions of ``--batch`` (what one seal
writes). Designs:

* ``none``: no search index;
* ``trigram``: pg_trgm's GIN index over all text fields (what migrations made before 0007, and
  ``auditlog search-index create`` builds); ``trigram_bulk`` builds it once after the rows;
* ``words``: a GIN index of each event's words, split by PostgreSQL (``regexp_split_to_array``);
* ``tokens``: a GIN index of each event's tokens, split by the client, one array per event;
* ``blocks``: the search-block index as the sealer writes it (:mod:`auditlog.core.search_keys`,
  the rows from :func:`auditlog.pg.search_blocks.block_rows`, the table of migration 0007);
  ``blocks_bulk`` builds its GIN index once after the rows (is building it in bulk, e.g. per
  finished partition, any cheaper than merging its pending list as it goes?).

Per event: PostgreSQL's backend CPU (from ``/proc``: PostgreSQL must run on this machine), the
client's CPU for what the design computes itself, the WAL written (``pg_current_wal_lsn``, after a
``CHECKPOINT`` when the role may run one; other work on the cluster counts too), and the size of
the indexes. Uses ``AUDITLOG_DATABASE_URL``; drops its schema afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from auditlog.core.columns import SEARCH_TEXT, searchable_values
from auditlog.core.search_keys import tokens
from auditlog.loadtest.events import EventGenerator
from auditlog.pg.search_blocks import block_rows, copy_blocks
from bench import results
from bench.harness import process_cpu

_TEXT: Final = (
    "tenant_id", "actor", "action", "target", "status", "source", "message", "new_value",
    "old_value",
)  # fmt: skip
_COLUMNS: Final = ("log_id", "idx", "received_at", *_TEXT)
_LOG: Final = "bench-0"

_WORDS: Final = (
    "CREATE FUNCTION bench_search.words(text) RETURNS tsvector LANGUAGE sql IMMUTABLE"
    " PARALLEL SAFE AS $$ SELECT array_to_tsvector(array_remove("
    "regexp_split_to_array($1, '[^A-Za-z0-9]+'), '')) $$"
)
_BLOCKS: Final = (
    "CREATE TABLE bench_search.blocks (log_id text NOT NULL, first_idx bigint NOT NULL,"
    " last_idx bigint NOT NULL, first_at timestamptz NOT NULL, last_at timestamptz NOT NULL,"
    " keys integer[] NOT NULL, PRIMARY KEY (log_id, first_idx));"
    " ALTER TABLE bench_search.blocks ALTER COLUMN keys SET STORAGE EXTERNAL"
)
_ON_T: Final = "CREATE INDEX ON bench_search.t USING "
_TRIGRAM: Final = f"{_ON_T}gin (({SEARCH_TEXT}) gin_trgm_ops)"
_BLOCKS_INDEX: Final = "CREATE INDEX ON bench_search.blocks USING gin (keys)"
# design -> (its index's statement or None, build it after the rows)
DESIGNS: Final[dict[str, tuple[str | None, bool]]] = {
    "none": (None, False),
    "trigram": (_TRIGRAM, False),
    "trigram_bulk": (_TRIGRAM, True),
    "words": (f"{_ON_T}gin (bench_search.words({SEARCH_TEXT}))", False),
    "tokens": (f"{_ON_T}gin (tokens)", False),
    "blocks": (_BLOCKS_INDEX, False),
    "blocks_bulk": (_BLOCKS_INDEX, True),
}

Row = tuple[Any, ...]


def events(count: int, seed: int) -> list[Row]:
    """``(log_id, idx, received_at, *text columns)`` of ``count`` realistic events."""
    gen = EventGenerator(seed)
    start = datetime.now(UTC)
    return [
        (_LOG, i, start + timedelta(microseconds=i), *searchable_values(gen.event(start))[:9])
        for i in range(count)
    ]


def _with_tokens(batch: list[Row]) -> list[Row]:
    # Whole-value marks (NUL-delimited, search_keys.tokens) cannot be PostgreSQL text: this
    # design indexes the words only, as it did before the block index had marks.
    return [
        (*row, [t.decode("utf-8", "surrogatepass") for t in tokens(row[3:]) if t[:1] != b"\0"])
        for row in batch
    ]


def _blocks(batch: list[Row]) -> list[Row]:
    return block_rows(_LOG, [row[1:] for row in batch])


async def measure(
    conn: asyncpg.Connection, design: str, data: list[Row], batch: int
) -> dict[str, Any]:
    index, bulk = DESIGNS[design]
    columns: tuple[str, ...] = _COLUMNS
    extra = ""
    client_rows: Callable[[list[Row]], list[Row]] | None = None
    if design == "tokens":
        columns, extra, client_rows = (
            (*_COLUMNS, "tokens"),
            ', tokens text[] COLLATE "C"',
            _with_tokens,
        )
    await conn.execute("DROP TABLE IF EXISTS bench_search.t, bench_search.blocks")
    await conn.execute(
        "CREATE TABLE bench_search.t (log_id text, idx bigint, received_at timestamptz,"
        f" {', '.join(f'{c} text' for c in _TEXT)}{extra}, PRIMARY KEY (log_id, idx))"
    )
    with_blocks = design.startswith("blocks")
    if with_blocks:
        await conn.execute(_BLOCKS)
    if index and not bulk:
        await conn.execute(index)
    # Full-page images follow a checkpoint: start every design from one, as a long run meets
    # them anyway. Needs pg_checkpoint; without it the WAL figures compare less well.
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await conn.execute("CHECKPOINT")
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    lsn = await conn.fetchval("SELECT pg_current_wal_lsn()")
    client = 0.0
    cpu0, t0 = process_cpu(pid), time.perf_counter()
    for start in range(0, len(data), batch):
        rows = data[start : start + batch]
        began = time.process_time()
        blocks = _blocks(rows) if with_blocks else []
        if client_rows is not None:
            rows = client_rows(rows)
        client += time.process_time() - began
        async with conn.transaction():
            await conn.copy_records_to_table(
                "t", schema_name="bench_search", records=rows, columns=columns
            )
            if blocks:
                await copy_blocks(conn, blocks, table="blocks", schema_name="bench_search")
    cpu1 = process_cpu(pid)
    if index and bulk:
        await conn.execute(index)
    cpu2, t2 = process_cpu(pid), time.perf_counter()
    wal = await conn.fetchval("SELECT pg_current_wal_lsn() - $1::pg_lsn", lsn)
    size = await conn.fetchval(
        "SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index WHERE indrelid IN"
        " (to_regclass('bench_search.t'), to_regclass('bench_search.blocks'))"
    )
    n = len(data)
    return {
        "design": design,
        "events": n,
        "postgres_cpu_us_per_event": round((cpu2 - cpu0) / n * 1e6, 1),
        "postgres_build_cpu_us_per_event": round((cpu2 - cpu1) / n * 1e6, 1),
        "client_cpu_us_per_event": round(client / n * 1e6, 1),
        "wal_bytes_per_event": round(float(wal) / n),
        "index_bytes_per_event": round(size / n),
        "wall_s": round(t2 - t0, 2),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    data = events(args.events, args.seed)
    # Tables are dropped and made again with other columns: no cached statements.
    conn = await asyncpg.connect(os.environ["AUDITLOG_DATABASE_URL"], statement_cache_size=0)
    out = []
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        await conn.execute("DROP SCHEMA IF EXISTS bench_search CASCADE")
        await conn.execute("CREATE SCHEMA bench_search")
        await conn.execute(_WORDS)
        for design in args.design:
            figures = await measure(conn, design, data, args.batch)
            print(" ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
            out.append(figures)
    finally:
        await conn.execute("DROP SCHEMA IF EXISTS bench_search CASCADE")
        await conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000, help="events per COPY transaction")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--design", nargs="+", choices=list(DESIGNS), default=list(DESIGNS))
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args()
    started = results.now()
    figures = asyncio.run(run(args))
    path = results.write(
        "bench_search_cost", started, vars(args), {"designs": figures}, args.results_dir
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
