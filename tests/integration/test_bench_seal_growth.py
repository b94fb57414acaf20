"""bench_seal_growth's figures, from a short run against a real PostgreSQL: the statements it
times are the sealer's own, and each milestone says what the events since the previous one cost."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest

from auditlog.pg import search_blocks
from bench.bench_seal_growth import _run, keys_salted_by_span
from sealer import rows
from tests.conftest import Services, scratch_database

pytestmark = pytest.mark.integration


def test_milestones_carry_the_marginal_cost_and_the_statements_of_a_seal(
    services: Services,
) -> None:
    name = f"seal_growth_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:
        figures = asyncio.run(_run(url, 1500, 500, [], breakdown=True, milestones=(500, 1500)))
    assert [m["events"] for m in figures["milestones"]] == [500, 1500]
    first, second = (m["since_previous"] for m in figures["milestones"])
    assert (first["events"], second["events"]) == (500, 1000)
    for interval in (first, second):
        assert interval["cpu_us_per_event"]["bench"] > 0
        assert interval["wal_bytes_per_event"] > 0
        assert interval["wal_full_page_images_per_event"] >= 0
        assert interval["checkpoints"] >= 0
        # Every statement of the seal went through the timing wrapper, the blocks' COPY included.
        assert {"COPY events", "COPY search_blocks", "COMMIT"} <= set(interval["ms_per_batch_mean"])
    assert "search_blocks_g0_keys" in figures["milestones"][-1]["largest_indexes"]
    assert figures["milestones"][-1]["search_blocks_index_bytes"] > 0
    assert figures["breakdown"]["batches"] == 3
    assert figures["postgres_settings"]["shared_buffers"]


def test_key_generation_salts_each_span_and_leaves_the_sealer_as_it_was(
    services: Services,
) -> None:
    """--key-generation is an experiment: its blocks' keys differ by span (a token's posting
    lists then hold one span's blocks), and the sealer's own rows are untouched afterwards."""
    name = f"seal_growth_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:
        with keys_salted_by_span(128):
            asyncio.run(_run(url, 256, 128, [], milestones=()))

        async def blocks() -> list[tuple[int, list[int]]]:
            conn = await asyncpg.connect(url)
            try:
                found = await conn.fetch(
                    "SELECT first_idx, keys FROM search_blocks ORDER BY first_idx"
                )
            finally:
                await conn.close()
            return [(r["first_idx"], list(r["keys"])) for r in found]

        found = asyncio.run(blocks())
    assert [first for first, _ in found] == [0, 64, 128, 192]
    # The tenant marks and common words repeat in every block: within a span they are the
    # same keys, across spans different ones.
    shared_within = set(found[0][1]) & set(found[1][1])
    shared_across = set(found[1][1]) & set(found[2][1])
    assert shared_within
    # (A key shared across spans is a chance collision of two keys: ~1 in 1,000 such pairs.)
    assert len(shared_across) <= 1
    assert rows.block_row is search_blocks.block_row


def test_generations_open_as_the_log_grows_and_take_the_blocks_written_meanwhile(
    services: Services,
) -> None:
    name = f"seal_growth_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name) as url:
        # 50 batches of 40: the run checks after the 25th and the 50th.
        figures = asyncio.run(_run(url, 2000, 40, [], milestones=(), generation_entries=500))

        async def spans() -> list[tuple[int, int, int]]:
            conn = await asyncpg.connect(url)
            try:
                found = await conn.fetch(
                    "SELECT generation, min(first_idx), max(last_idx) FROM search_blocks"
                    " GROUP BY generation ORDER BY generation"
                )
            finally:
                await conn.close()
            return [tuple(r) for r in found]

        found = asyncio.run(spans())
    assert figures["generations_opened_at"] == [1000, 2000]
    # Generation 1 opened after entry 999 was sealed; nothing was sealed after generation 2.
    assert found == [(0, 0, 999), (1, 1000, 1999)]
