"""What the partitions of ``events`` cost a search: its locks and time as logs and months add up.

    .venv/bin/python -m bench.bench_search_partitions [--events 20000]
        [--layouts 1x1 12x12 48x24] [--rounds 20]

``events`` has a partition per month, each split by log (sealer/partitions.py), so a deployment
of 48 partitions keeping two years has over a thousand leaves, each with its indexes. A query
plans, and locks until its transaction ends, every partition it cannot rule out from its
constants. Loads ``--events`` realistic events into one log as bench_search does, then, for each
layout LOGSxMONTHS, adds that many logs to the topic (of one entry each, no events) and the
empty leaves of that many months before the events' for each, and runs a selective
search (a UUID from a message) as the query service does (:func:`query.search.run`, in its
repeatable-read transaction), ``--rounds`` times: narrowed by the blocks to the months and logs
they lie in, and once more with the log marked as having entries without blocks, which makes the
search plan every partition; and a value without a whole token found in nearly every event
(:data:`IN_ORDER`), which reads events in time order, a month at a time from the newest, until
10,000 match, and one found in none (:data:`RARE_IN_ORDER`), which reads every month, in time
order and ordered by actor (which reads every month whatever it finds). Records
the relation locks each holds at its end and the most at once (``bench_search_generations._locks``;
against :func:`auditlog.pg.locks.lock_room`'s estimate) and its median time; and the locks and
time of reading the selective search's first page of events (query/events.py), of a receipt's
lookup of its event by hash or by log and index (query/hashes.py), and of exporting the whole
log (query/downloads.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import asyncpg

from auditlog.core.note import NoteSigner
from auditlog.pg.locks import lock_room
from bench import results
from bench.bench_search import loaded_log
from bench.bench_search_generations import _HELD, _locks, counting_locks
from bench.harness import percentile
from bench.query_data import build_log
from query import events as event_rows
from query import search_months
from query.downloads import _export_chunks
from query.hashes import find_at, find_by_hash
from query.search import MAX_RESULTS, SearchSpec, run
from query.search_sql import Filter
from sealer.partitions import Partitions
from sealer.timestamps import micros


def _layout(text: str) -> tuple[int, int]:
    logs, _, months = text.partition("x")
    return int(logs), int(months)


async def _time(
    url: str, topic: str, query: str, rounds: int, order_by: str = "received_at"
) -> float:
    """Median milliseconds of the search's transaction, as the query service runs it."""
    conn = await asyncpg.connect(url)
    took = []
    try:
        for _ in range(rounds):
            began = time.perf_counter()
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                spec = SearchSpec(query, Filter(), order_by, True, 20, MAX_RESULTS, False)
                await run(conn, spec, topic)
            took.append((time.perf_counter() - began) * 1000)
    finally:
        await conn.close()
    return percentile(took, 50)


# A value without a whole token in nearly every message: read in time order, newest first,
# until max_results (10,000) match.
IN_ORDER = "message:e"
# A value without a whole token found in no event: read in time order through every month.
RARE_IN_ORDER = "message:qzxjv"


async def _page(url: str, topic: str, query: str, rounds: int) -> dict[str, Any]:
    """The first page of the search's events (query/events.py ``fetch``, as the query service
    reads it after the search): the relation locks its statement holds, and its median time."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            spec = SearchSpec(query, Filter(), "received_at", True, 20, MAX_RESULTS, False)
            _, keys = await run(conn, spec, topic)
        took = []
        for _ in range(rounds):
            began = time.perf_counter()
            await event_rows.fetch(conn, keys[:20])
            took.append((time.perf_counter() - began) * 1000)
        async with conn.transaction():
            await event_rows.fetch(conn, keys[:20])
            locks = await conn.fetchval(
                "SELECT count(*) FROM pg_locks"
                " WHERE pid = pg_backend_pid() AND locktype = 'relation'"
            )
    finally:
        await conn.close()
    return {"events": len(keys[:20]), "locks": locks, "median_ms": percentile(took, 50)}


async def _export(url: str, log_id: str, size: int) -> dict[str, Any]:
    """An export of the whole log, oldest first, as ``POST /v1/export`` streams it
    (query/downloads.py), its events read in chunks: how long, for how many events."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    try:
        st = SimpleNamespace(pool=pool, settings=SimpleNamespace(max_page_bytes=4 * 1024 * 1024))
        snap = SimpleNamespace(heads=[SimpleNamespace(log_id=log_id, size=size)])
        params = {"order": "asc", "start": None, "end": None}
        began = time.perf_counter()
        events = 0
        async for chunk in _export_chunks(st, params, None, snap, 0):  # type: ignore[arg-type]
            events += len(chunk)
        took = time.perf_counter() - began
    finally:
        await pool.close()
    return {"events": events, "seconds": round(took, 3)}


async def _receipts(url: str, log_id: str, rounds: int) -> dict[str, Any]:
    """What a receipt's lookup of its event costs (query/hashes.py ``find_by_hash``, as
    ``GET /v1/receipts/{hash}`` runs it): the log's newest event by its hash alone, the same
    with its ``received_at``, and a hash no event has (every month read, then the erasures);
    and by its log and index (``find_at``: receipts by idempotency key, and by index for a
    tenant-bound token). Each: the most relation locks held at once (a released read's counted
    before it lets go, a plain statement's at its end) and the median time."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    figures: dict[str, Any] = {}
    try:
        newest = await pool.fetchrow(
            "SELECT idx, event_hash, received_at FROM events WHERE log_id = $1"
            " ORDER BY idx DESC LIMIT 1",
            log_id,
        )
        assert newest is not None
        lookups = {
            "by_hash": (bytes(newest["event_hash"]), None),
            "by_hash_and_time": (bytes(newest["event_hash"]), newest["received_at"]),
            "missing": (bytes(32), None),
        }
        for name, (digest, received_at) in lookups.items():
            took = []
            for _ in range(rounds):
                began = time.perf_counter()
                row = await find_by_hash(pool, digest, None, received_at)
                took.append((time.perf_counter() - began) * 1000)
            assert (row is None) == (name == "missing"), (name, row)
            figures[name] = {
                "locks": await _lookup_locks(pool, digest, received_at),
                "median_ms": percentile(took, 50),
            }
        took = []
        for _ in range(rounds):
            began = time.perf_counter()
            assert await find_at(pool, log_id, newest["idx"]) is not None
            took.append((time.perf_counter() - began) * 1000)
        counted = [0]
        await find_at(_Counting(pool, counted), log_id, newest["idx"])  # type: ignore[arg-type]
        figures["by_index"] = {"locks": counted[0], "median_ms": percentile(took, 50)}
    finally:
        await pool.close()
    return figures


class _Counting:
    """A pool, or a connection of it, whose statements outside a transaction, which hold their
    locks to their end, count them there (the most into ``most``)."""

    def __init__(self, target: Any, most: list[int]) -> None:
        self.target, self.most = target, most

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Counting]:
        async with self.target.acquire() as conn:
            yield _Counting(conn, self.most)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if isinstance(self.target, asyncpg.Pool):
            async with self.acquire() as conn:
                return await conn.fetchrow(sql, *args)
        async with self.target.transaction():
            row = await self.target.fetchrow(sql, *args)
            self.most[0] = max(self.most[0], await self.target.fetchval(_HELD) - 1)
            return row


async def _lookup_locks(pool: asyncpg.Pool, digest: bytes, received_at: datetime | None) -> int:
    """The most relation locks one lookup held at once: its plain statements' and its released
    reads' (the catalog's, before a walk of the months)."""
    plain = [0]
    with counting_locks(search_months) as released:
        await find_by_hash(_Counting(pool, plain), digest, None, received_at)  # type: ignore[arg-type]
    return max(released[0], plain[0])


async def _measure(
    url: str, topic: str, log_id: str, query: str, rounds: int, size: int
) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        narrowed = {
            "locks": await _locks(url, topic, query, Filter()),
            "median_ms": await _time(url, topic, query, rounds),
        }
        page = await _page(url, topic, query, rounds)
        receipts = await _receipts(url, log_id, rounds)
        export = await _export(url, log_id, size)
        in_order = {
            "locks": await _locks(url, topic, IN_ORDER, Filter()),
            "median_ms": await _time(url, topic, IN_ORDER, rounds),
        }
        rare_in_order = {
            "locks": await _locks(url, topic, RARE_IN_ORDER, Filter()),
            "median_ms": await _time(url, topic, RARE_IN_ORDER, rounds),
        }
        rare_by_actor = {
            "locks": await _locks(url, topic, RARE_IN_ORDER, Filter(), "actor"),
            "median_ms": await _time(url, topic, RARE_IN_ORDER, rounds, "actor"),
        }
        await conn.execute(
            "INSERT INTO search_coverage (log_id, below) VALUES ($1, 1)"
            " ON CONFLICT (log_id) DO UPDATE SET below = 1",
            log_id,
        )
        everywhere = {
            "locks": await _locks(url, topic, query, Filter()),
            "median_ms": await _time(url, topic, query, rounds),
        }
        await conn.execute("UPDATE search_coverage SET below = 0 WHERE log_id = $1", log_id)
        room = await lock_room(conn)
        leaves = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'events%' AND relkind = 'r'"
        )
    finally:
        await conn.close()
    return {
        "events_leaves": leaves,
        "narrowed": narrowed,
        "first_page": page,
        "receipts": receipts,
        "export": export,
        "every_partition": everywhere,
        "in_time_order": in_order,
        "rare_in_time_order": rare_in_order,
        "rare_by_actor": rare_by_actor,
        "estimated_locks": room.per_search,
        "lock_slots": room.slots,
    }


async def _add_leaves(url: str, topic: str, logs: int, months: int, signer: NoteSigner) -> None:
    """The leaves of ``logs`` logs of the topic (those it has not yet made of one entry each,
    as a search covers every log of its topic) over ``months`` months before the events'."""
    partitions = Partitions()
    conn = await asyncpg.connect(url)
    try:
        known = {r[0] for r in await conn.fetch("SELECT log_id FROM logs")}
        for log in range(logs):
            log_id = f"{topic}-{log}"
            if log_id not in known:
                await build_log(url, log_id, topic, 1, signer, partition=log)
            for m in range(months):
                at = micros(datetime(2024 + m // 12, m % 12 + 1, 2, tzinfo=UTC))
                await partitions.ensure(conn, log_id, [at])
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--layouts", nargs="+", type=_layout, default=[(1, 1), (12, 12), (48, 24)])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    figures: dict[str, Any] = {"runs": []}
    with loaded_log(args.events, args.seed) as (bench, log_id, samples, _):
        signer = NoteSigner.from_skey(bench.key_file.read_text().strip())
        query = samples.uuids[0]
        for logs, months in args.layouts:
            asyncio.run(_add_leaves(bench.database_url, bench.topic, logs, months, signer))
            run_figures = asyncio.run(
                _measure(bench.database_url, bench.topic, log_id, query, args.rounds, args.events)
            )
            run_figures["layout"] = {"logs": logs, "months": months}
            print(
                f"{logs} logs x {months} months ({run_figures['events_leaves']} leaves):"
                f" narrowed {run_figures['narrowed']}, its first page {run_figures['first_page']},"
                f" receipts {run_figures['receipts']},"
                f" an export of the log {run_figures['export']},"
                f" every partition"
                f" {run_figures['every_partition']}, in time order {run_figures['in_time_order']},"
                f" a rare value in time order {run_figures['rare_in_time_order']},"
                f" the same by actor {run_figures['rare_by_actor']},"
                f" estimate {run_figures['estimated_locks']}",
                flush=True,
            )
            figures["runs"].append(run_figures)
    path = results.write("bench_search_partitions", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
