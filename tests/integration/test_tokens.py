"""API tokens in PostgreSQL: a revoked token stays revoked, whatever creates it again."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from auditlog.pg.tokens import TokenCache, TokenRevoked, create_token, revoke_token
from tests.conftest import Services

pytestmark = pytest.mark.integration


def test_creating_a_revoked_secret_again_does_not_revive_it(services: Services) -> None:
    async def scenario() -> None:
        pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=2)
        try:
            secret, info = await create_token(pool, "dev", {"log"}, token="alt_dev_fixed_secret")
            again, same = await create_token(pool, "dev", {"log"}, token=secret)
            assert (again, same) == (secret, info)  # a valid one is kept as it is
            assert await revoke_token(pool, info.token_id)
            with pytest.raises(TokenRevoked):
                await create_token(pool, "dev", {"log", "admin"}, token=secret)
            assert await TokenCache(pool).resolve(secret) is None
        finally:
            await pool.close()

    asyncio.run(scenario())
