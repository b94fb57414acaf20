"""auditlog.pg.locks against what a search really holds: the estimate of a search without a
time range covers the relation locks the query service's search takes, grows by what each new
generation adds, and the lock table is the server's."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from auditlog.cli.keys import write_signing_key
from auditlog.core.note import NoteSigner
from auditlog.pg import search_generations
from auditlog.pg.locks import lock_room
from bench.bench_search import load
from bench.bench_search_generations import _locks
from bench.query_data import build_log
from query.search_sql import Filter
from tests.conftest import Services, connected, scratch_database

pytestmark = pytest.mark.integration


def test_the_estimate_matches_a_search_as_generations_are_added(
    services: Services, tmp_path: Path
) -> None:
    key = tmp_path / "log.skey"
    write_signing_key(key, "locks.auditlog.test")
    signer = NoteSigner.from_skey(key.read_text().strip())
    with scratch_database(services.database_url, f"locks_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            await build_log(url, "t-0", "t", 700, signer)
            samples, _, _ = await load(url, "t-0", 700, 1, 0)
            query = f'actor="{samples.actors[0]}"'  # a whole value: the blocks narrow it
            async with connected(url) as conn:
                held = []
                for more in (0, 10):
                    for _ in range(more):
                        await search_generations.open_next(conn)
                    room = await lock_room(conn)
                    actual = await _locks(url, "t", query, Filter())
                    assert room.per_search >= actual
                    assert room.per_search - actual <= 2, (room, actual)
                    held.append(actual)
                # Each generation: its table, its key, its GIN index.
                assert held[1] - held[0] == 30
                assert room.slots == await conn.fetchval(
                    "SELECT current_setting('max_locks_per_transaction')::int"
                    " * (current_setting('max_connections')::int"
                    " + current_setting('max_prepared_transactions')::int)"
                )
                assert room.searches == room.slots // room.per_search

        asyncio.run(check())
