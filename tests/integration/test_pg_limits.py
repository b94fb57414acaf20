"""PostgreSQL bounds every statement of a service's pool; a search may take longer, alone."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from auditlog.pg import db
from tests.conftest import Services

pytestmark = pytest.mark.integration


def test_a_statement_past_the_pool_timeout_is_cancelled(services: Services) -> None:
    async def scenario() -> None:
        pool = await db.connect_pool(services.database_url, max_size=1, statement_timeout=0.2)
        try:
            assert await pool.fetchval("SELECT 1") == 1
            with pytest.raises(asyncpg.QueryCanceledError):
                await pool.execute("SELECT pg_sleep(2)")
            # SET LOCAL lifts it for one transaction only, as a search does.
            async with pool.acquire() as conn:
                async with conn.transaction():
                    await conn.execute("SET LOCAL statement_timeout = 5000")
                    await conn.execute("SELECT pg_sleep(0.4)")
                with pytest.raises(asyncpg.QueryCanceledError):
                    await conn.execute("SELECT pg_sleep(2)")
        finally:
            await pool.close()

    asyncio.run(scenario())
