"""auditlog.pg.locks against what a search really holds: the estimate covers a search that
must plan every partition (here: one whose log has entries without search blocks, which may lie
anywhere), grows by what each new generation adds, and the lock table is the server's; a search
the blocks narrow plans only the months and logs of ``events`` its blocks lie in, and holds no
lock of the generations its probe planned beyond those; one that cannot be narrowed to a span
holds one month's at a time."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import pytest

from auditlog.core.note import NoteSigner
from auditlog.pg import search_generations
from auditlog.pg.locks import lock_room
from bench.bench_search import load
from bench.bench_search_generations import _locks
from bench.query_data import build_log
from query.search_sql import Filter
from sealer.partitions import Partitions
from sealer.timestamps import micros
from tests.conftest import Services, connected, insert_event, scratch_database

pytestmark = pytest.mark.integration


def test_the_estimate_covers_a_search_of_every_partition_and_narrowed_ones_plan_fewer(
    services: Services, note_signer: NoteSigner
) -> None:
    with scratch_database(services.database_url, f"locks_{secrets.token_hex(4)}") as url:

        async def check() -> None:
            await build_log(url, "t-0", "t", 700, note_signer)
            samples, _, _ = await load(url, "t-0", 700, 1, 0)
            query = f'actor="{samples.actors[0]}"'  # a whole value: the blocks narrow it
            async with connected(url) as conn:
                # Other logs' months, as a deployment's year of partitions has them.
                partitions = Partitions()
                for log in ("t-1", "t-2", "t-3"):
                    for month in (1, 2, 3):
                        at = micros(datetime(2024, month, 2, tzinfo=UTC))
                        await partitions.ensure(conn, log, [at])
                narrowed = [(await _locks(url, "t", query, Filter()))["held_at_end"]]
                # Ten generations more, closed but for the newest two, none holding its blocks:
                # the probe plans them all, but its locks are released once it answered.
                for _ in range(10):
                    await search_generations.open_next(conn)
                await search_generations.bound_closed(conn)
                counted = await _locks(url, "t", query, Filter())
                narrowed.append(counted["held_at_end"])
                assert narrowed[1] - narrowed[0] == 6, narrowed  # the two newest, planned
                # While the probe ran, it held all eleven generations.
                assert counted["most_at_once"] >= narrowed[1] + 8 * 3, counted
                # Entry 0 without blocks: the search must read it wherever it lies, which it does
                # a month at a time, holding one month's partitions (and the generations) at once.
                await conn.execute("INSERT INTO search_coverage (log_id, below) VALUES ('t-0', 1)")
                walked = await _locks(url, "t", query, Filter())
                # And an event outside every month (in events_default): one statement, which
                # plans every partition and generation, the most a search can hold.
                await insert_event(conn, "t-0", 10**6, datetime(2090, 1, 1, tzinfo=UTC), "x")
                held = []
                for more in (0, 10):
                    for _ in range(more):
                        await search_generations.open_next(conn)
                    room = await lock_room(conn)
                    counted = await _locks(url, "t", query, Filter())
                    everywhere = counted["most_at_once"]
                    assert room.per_search >= everywhere
                    assert room.per_search - everywhere <= 2, (room, everywhere)
                    held.append(everywhere)
                # Each generation: its table, its key, its GIN index.
                assert held[1] - held[0] == 30
                # Narrowed to its blocks' month and log, the search left out the nine leaves of
                # the other logs (each with its indexes) and their months; walking the months,
                # it held at most one month's.
                assert narrowed[1] < held[0] - 9 * 5, (narrowed, held[0])
                assert walked["most_at_once"] < held[0] - 9 * 5, (walked, held[0])
                assert walked["held_at_end"] < walked["most_at_once"], walked
                assert room.slots == await conn.fetchval(
                    "SELECT current_setting('max_locks_per_transaction')::int"
                    " * (current_setting('max_connections')::int"
                    " + current_setting('max_prepared_transactions')::int)"
                )
                assert room.searches == room.slots // room.per_search

        asyncio.run(check())
