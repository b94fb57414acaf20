"""bench_seal_growth's figures, from a short run against a real PostgreSQL: the statements it
times are the sealer's own, and each milestone says what the events since the previous one cost."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from bench.bench_seal_growth import _run
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
    assert "search_blocks_keys" in figures["milestones"][-1]["largest_indexes"]
    assert figures["breakdown"]["batches"] == 3
    assert figures["postgres_settings"]["shared_buffers"]
