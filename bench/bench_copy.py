"""The cost of the sealer's `COPY` per events row: the client's, by how `received_at` is sent,
and PostgreSQL's, by the table the rows are copied into.

    .venv/bin/python -m bench.bench_copy [--rows 100000] [--batch 2000] [--rounds 2] \
        [--tenants 125] [--drop-index NAME ...]

Client: copies ``--rows`` rows shaped like the sealer's (18 columns, one timestamp set) in
batches of ``--batch`` into a temporary table of the local stack's database, and prints the
client CPU (``time.process_time``) per row three ways: a ``datetime`` through asyncpg's own
``timestamptz`` codec, a ``datetime`` through the sealer's (sealer/timestamps.py), and the
integer the sealer actually sends through the sealer's.

Server: in a scratch database with the migrated schema (without the substring-search index),
copies ``--rows`` rows of a fresh log per round (``--tenants`` tenants taking turns, as a
sealer's partition sees them), one transaction per batch, into ``events`` as the sealer does
(PostgreSQL routes every row to its month, then to the log's leaf) and into the log's leaf
directly (to see what that routing costs), alternating, and prints the backend's CPU per row
(from ``/proc``; so PostgreSQL must run on this machine, as the local stack does) and the size
of the ``(tenant_id, received_at)`` index per row. ``--drop-index`` copies without an index of
``events`` (its cost is the difference to a run with it).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from auditlog.devstack import stack
from auditlog.pg import db, search_index
from bench import results
from bench.harness import process_cpu
from sealer import timestamps
from sealer.rows import EVENT_COLUMNS
from sealer.store import Partitions, partition_name

_TABLE = (
    "CREATE TEMPORARY TABLE copy_bench (log_id text, idx bigint, event_hash bytea,"
    " envelope bytea, received_at timestamptz, kafka_offset bigint, tenant_id text, actor text,"
    " action text, target text, status text, source text, message text, new_value text,"
    " old_value text, event_time timestamptz, idempotency_key text, config_id text)"
)


def _rows(
    n: int, log_id: str = "audit.events-0", salt: str = "", tenants: int = 1
) -> list[tuple[object, ...]]:
    base = datetime(2026, 11, 26, tzinfo=UTC)
    envelope = b'{"event":{"action":"read","actor":"user-1","message":"m"}}' * 6
    return [
        (log_id, i, hashlib.sha256(f"{salt}{i}".encode()).digest(), envelope,
         base + timedelta(microseconds=i), i, f"tenant-{i % tenants}", "user-1", "read",
         "doc-1", "ok", "10.0.0.1", f"event {i}", None, None, None, None, None)
        for i in range(n)
    ]  # fmt: skip


async def _copy_cpu(conn: asyncpg.Connection, rows: list[tuple[object, ...]], batch: int) -> float:
    """Client CPU seconds per row to copy ``rows`` in batches of ``batch``."""
    await conn.execute("TRUNCATE copy_bench")
    began = time.process_time()
    for start in range(0, len(rows), batch):
        await conn.copy_records_to_table(
            "copy_bench", columns=EVENT_COLUMNS, records=rows[start : start + batch]
        )
    return (time.process_time() - began) / len(rows)


async def _run(url: str, n: int, batch: int, rounds: int) -> list[dict[str, Any]]:
    figures: list[dict[str, Any]] = []
    plain = await asyncpg.connect(url)
    sealer = await asyncpg.connect(url)
    try:
        await timestamps.register(sealer)
        for conn in (plain, sealer):
            await conn.execute(_TABLE)
        with_datetimes = _rows(n)
        with_integers = [
            (*r[:4], timestamps.micros(r[4]), *r[5:])  # type: ignore[arg-type]
            for r in with_datetimes
        ]
        ways = [
            ("datetime, asyncpg's codec", plain, with_datetimes),
            ("datetime, the sealer's codec", sealer, with_datetimes),
            ("integer, the sealer's codec", sealer, with_integers),
        ]
        for r in range(rounds):
            for name, conn, rows in ways:
                per_row = await _copy_cpu(conn, rows, batch)
                print(f"{name:30s} {per_row * 1e6:5.2f} µs of client CPU per row")
                figures.append({"round": r, "way": name, "client_cpu_us_per_row": per_row * 1e6})
    finally:
        await plain.close()
        await sealer.close()
    return figures


async def _server(
    admin_url: str, n: int, batch: int, rounds: int, tenants: int, drop: list[str]
) -> dict[str, Any]:
    """PostgreSQL's CPU per row; the figures as printed (``skipped`` says why there are none)."""
    figures: dict[str, Any] = {"skipped": None, "copies": []}
    name = f"auditlog_bench_copy_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(await db.create_database(admin_url, name))
    try:
        await search_index.drop(conn)
        for index in drop:
            await conn.execute(f'DROP INDEX "{index}"')
            print(f"server: without index {index}")
        await timestamps.register(conn)
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        try:
            process_cpu(pid)
        except OSError:
            print("server: skipped, PostgreSQL's backend is not a process of this machine")
            figures["skipped"] = "PostgreSQL's backend is not a process of this machine"
            return figures
        received = timestamps.micros(datetime.now(UTC))
        month = timestamps.month(received)
        partitions = Partitions()
        for r in range(rounds):
            for routed in (True, False):
                log_id = f"bench.copy-{r}-{'routed' if routed else 'leaf'}"
                await partitions.ensure(conn, log_id, [received])
                rows = [
                    (*row[:4], received + i, *row[5:])
                    for i, row in enumerate(_rows(n, log_id, f"{log_id} ", tenants))
                ]
                table = "events" if routed else partition_name(*month, log_id)
                began = process_cpu(pid)
                for start in range(0, n, batch):
                    async with conn.transaction():
                        await conn.copy_records_to_table(
                            table, columns=EVENT_COLUMNS, records=rows[start : start + batch]
                        )
                per_row = (process_cpu(pid) - began) / n
                index_bytes = await conn.fetchval(
                    "SELECT pg_relation_size(indexrelid) FROM pg_index"
                    " WHERE indrelid = $1::regclass"
                    " AND pg_get_indexdef(indexrelid) LIKE '%(tenant_id, received_at)'",
                    partition_name(*month, log_id),
                )
                label = "into events (routed)" if routed else "into the log's leaf directly"
                size = "none" if index_bytes is None else f"{index_bytes / n:.0f} bytes per row"
                print(
                    f"{label:30s} {per_row * 1e6:5.2f} µs of PostgreSQL CPU per row"
                    f" ((tenant_id, received_at) index: {size})"
                )
                figures["copies"].append(
                    {
                        "round": r,
                        "into": "events (routed)" if routed else "the log's leaf directly",
                        "postgres_cpu_us_per_row": per_row * 1e6,
                        "tenant_time_index_bytes_per_row": (
                            None if index_bytes is None else index_bytes / n
                        ),
                    }
                )
    finally:
        await conn.close()
        await db.drop_database(admin_url, name)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--tenants",
        type=int,
        default=125,
        help="tenants among the server section's rows (bench_sealer's 500 over 4 partitions)",
    )
    parser.add_argument(
        "--drop-index",
        action="append",
        default=[],
        metavar="NAME",
        help="server section: copy without this index of events (what it costs)",
    )
    results.add_option(parser)
    args = parser.parse_args()
    started_at = results.now()
    cfg = stack.StackConfig.from_env()
    started = not stack.is_running(cfg)
    if started:
        stack.start(cfg)
    try:
        client = asyncio.run(_run(cfg.database_url, args.rows, args.batch, args.rounds))
        server = asyncio.run(
            _server(
                cfg.database_url, args.rows, args.batch, args.rounds, args.tenants, args.drop_index
            )
        )
    finally:
        if started:
            stack.stop(cfg)
    figures = {"client": client, "server": server}
    path = results.write("bench_copy", started_at, vars(args), figures, args.results_dir)
    print(f"result: {path}")


if __name__ == "__main__":
    main()
