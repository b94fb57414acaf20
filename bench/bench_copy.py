"""The sealer's client-side cost of `COPY` per events row, by how `received_at` is sent.

    .venv/bin/python -m bench.bench_copy [--rows 100000] [--batch 2000] [--rounds 2]

Copies ``--rows`` rows shaped like the sealer's (18 columns, one timestamp set) in batches of
``--batch`` into a temporary table of the local stack's database, and prints the client CPU
(``time.process_time``) per row three ways: a ``datetime`` through asyncpg's own
``timestamptz`` codec, a ``datetime`` through the sealer's (sealer/timestamps.py), and the
integer the sealer actually sends through the sealer's. PostgreSQL's side is not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from auditlog import stack
from sealer import timestamps
from sealer.store import EVENT_COLUMNS

_TABLE = (
    "CREATE TEMPORARY TABLE copy_bench (log_id text, idx bigint, event_hash bytea,"
    " envelope bytea, received_at timestamptz, kafka_offset bigint, tenant_id text, actor text,"
    " action text, target text, status text, source text, message text, new_value text,"
    " old_value text, event_time timestamptz, idempotency_key text, config_id text)"
)


def _rows(n: int) -> list[tuple[object, ...]]:
    base = datetime(2026, 11, 26, tzinfo=UTC)
    envelope = b'{"event":{"action":"read","actor":"user-1","message":"m"}}' * 6
    return [
        ("audit.events-0", i, hashlib.sha256(str(i).encode()).digest(), envelope,
         base + timedelta(microseconds=i), i, "tenant-1", "user-1", "read", "doc-1", "ok",
         "10.0.0.1", f"event {i}", None, None, None, None, None)
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


async def _run(url: str, n: int, batch: int, rounds: int) -> None:
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
        for _ in range(rounds):
            for name, conn, rows in ways:
                per_row = await _copy_cpu(conn, rows, batch)
                print(f"{name:30s} {per_row * 1e6:5.2f} µs of client CPU per row")
    finally:
        await plain.close()
        await sealer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cfg = stack.StackConfig.from_env()
    started = not stack.is_running(cfg)
    if started:
        stack.start(cfg)
    try:
        asyncio.run(_run(cfg.database_url, args.rows, args.batch, args.rounds))
    finally:
        if started:
            stack.stop(cfg)


if __name__ == "__main__":
    main()
