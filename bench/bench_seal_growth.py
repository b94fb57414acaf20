"""Per-batch seal cost as a log grows: flat, or not?

    .venv/bin/python -m bench.bench_seal_growth [--events 10000000] [--batch 2000]
        [--breakdown] [--drop-index events_search_text] [--extra-btree actor,target]
        [--templated] [--generation-entries N] [--key-generation N]

Calls the sealer's own transaction (`sealer.store.seal`) directly against the local
PostgreSQL, batch after batch into one log, without Kafka (whose cost does not depend on the
log's size), and prints the median milliseconds per batch around each milestone (10k, 100k,
1M, 2M, 5M, 10M events), what the events since the previous milestone cost PostgreSQL (CPU,
WAL: the marginal cost at that size) and the largest indexes' sizes. Events are realistic
(auditlog/loadtest/events.py; ``--templated``: the old best case, few distinct words), built in
memory beforehand per batch, so the figure is the sealer's work plus PostgreSQL's: leaf hashing,
integrate, COPY into the partitioned events table with its indexes, tiles, bundles, the signed
checkpoint and the fenced head update.

Every run reports the WAL PostgreSQL wrote per event (the whole cluster's, so on an idle
one); ``--breakdown`` also times every statement of the transaction and reports PostgreSQL's
CPU (all processes of the ``postgres`` user, from ``/proc``) and this process's per event;
``--drop-index`` measures what an index of the migrated schema costs by sealing without it.

The search blocks' generations open as a sealer opens them (auditlog/pg/search_generations.py),
checked every 25 batches: every ``--generation-entries`` entries (the sealer's default; 0: one
generation, the schema before migration 0011).

``--key-generation N`` is an experiment on the search blocks' keys, not a setting: each block's
keys are mixed with the number of its log's span of ``N`` entries (``first_idx // N``), so that
a token's GIN posting list holds only the blocks of one span. It asks whether PostgreSQL's
growing cost per event comes from ever longer posting lists (a search would then look a token
up once per span). Blocks written so would answer searches wrongly; they live only in the
benchmark's scratch database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from auditlog.loadtest.events import EventGenerator
from auditlog.pg import search_blocks, search_generations
from bench import results
from bench.harness import CpuMeter, bench_stack, postgres_settings
from sealer import rows
from sealer.index_merge import DEFAULT_GENERATION_ENTRIES
from sealer.records import Sealable
from sealer.store import Partitions, connect_pool, load_head, seal
from sealer.timestamps import micros

MILESTONES = (10_000, 100_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000)

# The largest indexes at each milestone: which of them outgrow shared_buffers, and when.
_INDEX_SIZES = (
    "SELECT relname, pg_relation_size(oid) AS bytes FROM pg_class"
    " WHERE relkind = 'i' AND relnamespace = 'public'::regnamespace"
    " ORDER BY bytes DESC LIMIT 6"
)
# Every generation's index of the blocks' keys, together.
_BLOCK_INDEX_BYTES = (
    "SELECT coalesce(sum(pg_relation_size(oid)), 0)::bigint FROM pg_class"
    " WHERE relkind = 'i' AND relname ~ '^search_blocks_g[0-9]+_keys$'"
)
# How often (batches) the run checks whether the next generation is due.
_ROLL_EVERY = 25
# Full-page images and checkpoints so far, cluster-wide (PostgreSQL 14+): whether a milestone's
# extra WAL is pages logged whole after a checkpoint or more records.
_WAL_STATS = (
    "SELECT pg_current_wal_lsn() AS lsn, (SELECT wal_fpi FROM pg_stat_wal) AS fpi,"
    " (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS checkpoints"
)


async def _wal_stats(pool: Any) -> dict[str, Any]:
    return dict(await pool.fetchrow(_WAL_STATS))


_KEY_MASK = 0x7FFFFFFF
_MIX = 0x9E3779B1  # odd: multiplying by it permutes the integers mod 2**31


@contextmanager
def keys_salted_by_span(span: int) -> Iterator[None]:
    """--key-generation: the sealer's blocks get keys mixed with their span's number, until
    the block ends (0: unchanged)."""
    if not span:
        yield
        return
    plain = search_blocks.block_row

    def salted(log_id: str, first: int, last: int, received: Any, searchable: Any) -> Any:
        row = plain(log_id, first, last, received, searchable)
        if row is None:
            return None
        # A bijection of 31-bit keys per span, so distinct keys stay distinct within it. Not an
        # XOR alone: CRC-32 is affine, so XOR-ing one salt would map tokens that differ in one
        # bit pattern ("34" and "35") onto each other's keys in the next span.
        salt = zlib.crc32(b"span %d" % (first // span)) & _KEY_MASK
        return (
            *row[:-1],
            [((key + salt) * _MIX & _KEY_MASK) ^ salt for key in cast(list[int], row[-1])],
        )

    # sealer.rows calls the name it imported: replace it there.
    setattr(rows, "block_row", salted)  # noqa: B010
    try:
        yield
    finally:
        setattr(rows, "block_row", plain)  # noqa: B010


def _batch(generator: EventGenerator, start: int, n: int, received: datetime) -> list[Sealable]:
    stamp = format_received_at(received)
    return [
        Sealable(start + i, Envelope(event=generator.event(received), received_at=stamp),
                 micros(received), None)
        for i in range(n)
    ]  # fmt: skip


class _Timed:
    """The sealer's connection, with the time of each statement kind added up in ``spent``."""

    def __init__(self, conn: Any, spent: dict[str, float]) -> None:
        self._conn, self._spent = conn, spent

    async def _timed(self, kind: str, call: Any) -> Any:
        began = time.perf_counter()
        try:
            return await call
        finally:
            self._spent[kind] += time.perf_counter() - began

    @staticmethod
    def _kind(sql: str) -> str:
        words = sql.split()
        table = next((w for w in words[1:4] if w.isidentifier() and w.upper() != "INTO"), "")
        return f"{words[0]} {table}".strip()

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._timed(self._kind(sql), self._conn.fetchrow(sql, *args))

    async def fetch(self, sql: str, *args: Any) -> Any:
        return await self._timed(self._kind(sql), self._conn.fetch(sql, *args))

    async def execute(self, sql: str, *args: Any) -> Any:
        return await self._timed(self._kind(sql), self._conn.execute(sql, *args))

    async def executemany(self, sql: str, args: Any) -> Any:
        return await self._timed(self._kind(sql), self._conn.executemany(sql, args))

    async def copy_records_to_table(self, table: str, **kwargs: Any) -> Any:
        return await self._timed(f"COPY {table}", self._conn.copy_records_to_table(table, **kwargs))

    async def copy_to_table(self, table: str, **kwargs: Any) -> Any:
        return await self._timed(f"COPY {table}", self._conn.copy_to_table(table, **kwargs))

    @asynccontextmanager
    async def transaction(self) -> Any:
        tx = self._conn.transaction()
        await self._timed("BEGIN", tx.start())
        try:
            yield tx
        except BaseException:
            await tx.rollback()
            raise
        await self._timed("COMMIT", tx.commit())


def _report_breakdown(
    spent: dict[str, float], batches: int, events: int, cpu: dict[str, float]
) -> dict[str, Any]:
    print(f"per batch, mean of {batches} (ms):")
    for kind, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<28} {seconds / batches * 1000:8.1f}")
    print(
        f"CPU per event: PostgreSQL {cpu.get('postgres', 0.0) / events * 1e6:.1f} µs,"
        f" this process {cpu.get('bench', 0.0) / events * 1e6:.1f} µs"
        " (building the events included)"
    )
    return {
        "batches": batches,
        "ms_per_batch_mean": {
            kind: seconds / batches * 1000
            for kind, seconds in sorted(spent.items(), key=lambda kv: -kv[1])
        },
    }


async def _run(
    url: str,
    events: int,
    batch: int,
    extra_btree: list[str],
    breakdown: bool = False,
    drop_index: list[str] | None = None,
    templated: bool = False,
    milestones: tuple[int, ...] = MILESTONES,
    generation_entries: int = DEFAULT_GENERATION_ENTRIES,
) -> dict[str, Any]:
    figures: dict[str, Any] = {"milestones": [], "breakdown": None, "generations_opened_at": []}
    pool = await connect_pool(url, max_size=2)
    try:
        for name in drop_index or ():
            # What an index costs the sealer: seal without it (an experiment, not a setting).
            await pool.execute(f"DROP INDEX {name}")
        for column in extra_btree:
            # What an index for exact search would cost the sealer (bench/JOURNAL.md).
            await pool.execute(f"CREATE INDEX bench_eq_{column} ON events ({column})")
        hasher = get_hasher("rfc6962-sha256")
        signer = NoteSigner.generate("bench.auditlog.test")
        head = await load_head(pool, "audit.growth", 0, "bench.auditlog.test", hasher)
        partitions = Partitions()
        generator = EventGenerator(0, templated=templated)
        window: list[float] = []
        spent: dict[str, float] = defaultdict(float)
        meter = CpuMeter()
        meter.sample()
        # The whole cluster's WAL: the run's figure holds only on an otherwise idle PostgreSQL.
        interval_wal = await _wal_stats(pool)
        wal_start = interval_wal["lsn"]
        # What the events since the previous milestone cost: the marginal cost at this size.
        interval_meter, interval_from = CpuMeter(), 0
        interval_meter.sample()
        interval_spent: dict[str, float] = defaultdict(float)
        batches = 0
        marks = iter(m for m in milestones if m <= events)
        mark = next(marks, None)
        began = time.perf_counter()
        while head.size < events:
            now = datetime.now(UTC)
            items = _batch(generator, head.size, min(batch, events - head.size), now)
            await partitions.ensure(pool, head.log_id, [micros(now)])
            t0 = time.perf_counter()
            async with pool.acquire() as conn:
                result = await seal(
                    _Timed(conn, spent) if breakdown else conn,  # type: ignore[arg-type]
                    head, hasher, signer, items, head.next_offset + len(items),
                )  # fmt: skip
            batches += 1
            window.append(time.perf_counter() - t0)
            head = result.head
            if batches % _ROLL_EVERY == 0:
                # As the leading sealer would, between seals (its own connection).
                async with pool.acquire() as conn:
                    if await search_generations.roll(conn, generation_entries) is not None:
                        figures["generations_opened_at"].append(head.size)
            window = window[-50:]
            if mark is not None and head.size >= mark:
                interval_meter.sample()
                cpu_since = interval_meter.seconds()
                wal_now = await _wal_stats(pool)
                wal_since = await pool.fetchval(
                    "SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)",
                    wal_now["lsn"],
                    interval_wal["lsn"],
                )
                since = head.size - interval_from
                figures["milestones"].append(
                    {
                        "events": head.size,
                        "median_ms_per_batch": statistics.median(window) * 1000,
                        "batches_in_median": len(window),
                        "events_per_s_in_transaction": batch / statistics.median(window),
                        "events_per_s_overall": head.size / (time.perf_counter() - began),
                        "since_previous": {
                            "events": since,
                            "cpu_us_per_event": {g: c / since * 1e6 for g, c in cpu_since.items()},
                            "wal_bytes_per_event": round(float(wal_since) / since, 1),
                            "wal_full_page_images_per_event": round(
                                (wal_now["fpi"] - interval_wal["fpi"]) / since, 4
                            ),
                            "checkpoints": wal_now["checkpoints"] - interval_wal["checkpoints"],
                            "ms_per_batch_mean": {
                                kind: (spent[kind] - interval_spent[kind]) / (since / batch) * 1000
                                for kind in spent
                            },
                        },
                        "largest_indexes": {
                            r["relname"]: r["bytes"] for r in await pool.fetch(_INDEX_SIZES)
                        },
                        "search_blocks_index_bytes": await pool.fetchval(_BLOCK_INDEX_BYTES),
                    }
                )
                interval_meter, interval_wal, interval_from = CpuMeter(), wal_now, head.size
                interval_meter.sample()
                interval_spent = defaultdict(float, spent)
                print(
                    f"at {head.size:>10,} events: median {statistics.median(window) * 1000:7.1f} ms"
                    f" per batch of {batch} ({batch / statistics.median(window):,.0f} events/s"
                    f" in the transaction), {head.size / (time.perf_counter() - began):,.0f}"
                    " events/s overall; since the previous milestone PostgreSQL"
                    f" {cpu_since.get('postgres', 0.0) / since * 1e6:.1f} µs and"
                    f" {float(wal_since) / since:,.0f} bytes of WAL per event",
                    flush=True,
                )
                mark = next(marks, None)
        meter.sample()
        cpu = meter.seconds()
        wal = await pool.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)", wal_start
        )
        figures.update(
            wal_bytes=int(wal),
            wal_bytes_per_event=round(float(wal) / max(head.size, 1), 1),
            events=head.size,
            batches=batches,
            seconds=time.perf_counter() - began,
            cpu_s=cpu,
            cpu_us_per_event={g: s / max(head.size, 1) * 1e6 for g, s in cpu.items()},
        )
        print(f"WAL: {figures['wal_bytes_per_event']:,.0f} bytes per event", flush=True)
        if breakdown:
            figures["breakdown"] = _report_breakdown(spent, batches, head.size, cpu)
        figures["postgres_settings"] = await postgres_settings(url)
    finally:
        await pool.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument(
        "--extra-btree",
        default="",
        help="comma list of events columns to give a btree first (e.g. actor,target)",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="time each statement; CPU per event"
    )
    parser.add_argument(
        "--drop-index",
        action="append",
        default=[],
        help="an events index to drop first, to measure its cost (e.g. events_search_text)",
    )
    parser.add_argument(
        "--templated",
        action="store_true",
        help="the best case: templated events (few distinct words) instead of realistic ones",
    )
    parser.add_argument(
        "--generation-entries",
        type=int,
        default=DEFAULT_GENERATION_ENTRIES,
        metavar="N",
        help="open the search blocks' next generation every N entries (0: one generation)",
    )
    parser.add_argument(
        "--key-generation",
        type=int,
        default=0,
        metavar="N",
        help="experiment: mix each block's keys with first_idx // N (searches then miss them)",
    )
    results.add_option(parser)
    args = parser.parse_args()
    started = results.now()
    extra = [c for c in args.extra_btree.split(",") if c]
    allowed = {"actor", "action", "target", "status", "source", "tenant_id", "message"}
    if not set(extra) <= allowed:
        parser.error(f"--extra-btree columns must be among {sorted(allowed)}")
    with bench_stack(Path(".auditlog/bench"), 1) as bench, keys_salted_by_span(args.key_generation):
        figures = asyncio.run(
            _run(
                bench.database_url,
                args.events,
                args.batch,
                extra,
                args.breakdown,
                args.drop_index,
                args.templated,
                generation_entries=args.generation_entries,
            )
        )
    path = results.write("bench_seal_growth", started, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
