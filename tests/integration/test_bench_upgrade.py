"""bench_upgrade's run at a small size against a real PostgreSQL: the upgrade from schema 10
applies migration 0011 over the loaded blocks, and every seal the writer made meanwhile, with the
column list of the sealers before it, lands, none of them lost or refused."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from auditlog.pg import db
from bench.bench_upgrade import _load, _sizes, _upgrade
from tests.conftest import Services, connected, scratch_database

pytestmark = pytest.mark.integration


def test_the_upgrade_keeps_every_block_and_every_seal_made_while_it_runs(
    services: Services,
) -> None:
    name = f"upgrade_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name, migrated_to=10) as url:
        assert asyncio.run(_load(url, 3000, 4)) > 0
        before = asyncio.run(_sizes(url))
        assert before["heap_bytes"] > 0 and before["index_bytes"] > 0
        figures = asyncio.run(_upgrade(url))
        assert figures["applied"] == [f for v, f, _ in db.migrations() if v > 10]
        assert figures["schema_version"] == db.SCHEMA_VERSION
        assert figures["writer_seals"] >= 50  # one every 20 ms for the two seconds around it
        assert figures["writer_seals_found_after"] == figures["writer_seals"]
        assert figures["upgrade_s"] > 0 and figures["writer_longest_seal_s"] > 0

        async def check() -> None:
            async with connected(url) as conn:
                per_log = await conn.fetch(
                    "SELECT log_id, count(*) AS n, min(generation) AS g FROM search_blocks"
                    " GROUP BY log_id ORDER BY log_id"
                )
                assert [(r["log_id"], r["n"], r["g"]) for r in per_log] == [
                    *((f"audit.events-{i}", 750, 0) for i in range(4)),
                    ("audit.events-writer", figures["writer_seals"], 0),
                ]
                # Log 1's blocks, each of 64 entries, in order.
                firsts = await conn.fetch(
                    "SELECT first_idx FROM search_blocks WHERE log_id = 'audit.events-1'"
                    " ORDER BY first_idx"
                )
                assert [r["first_idx"] for r in firsts] == [64 * i for i in range(750)]

        asyncio.run(check())
