"""Viewer tokens and token expiry (migration 0010) on a real PostgreSQL.

PostgreSQL refuses an expired token by itself (``expires_at > now()``), so a query process that
never saw the token refuses it too; the cache's own check is in tests/unit/test_token_cache.py,
the endpoint and the console in tests/e2e/test_console.py.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from auditlog.pg import db
from auditlog.pg.tokens import (
    TokenCache,
    hash_token,
    lookup_token,
    mint_viewer_token,
    revoke_token,
)
from tests.conftest import Services, scratch_database

pytestmark = pytest.mark.integration


async def test_a_viewer_token_reads_one_tenant_until_it_expires(services: Services) -> None:
    pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=2)
    try:
        secret, info = await mint_viewer_token(pool, "acme", timedelta(minutes=5))
        assert info.scopes == frozenset({"search"})
        assert info.tenant_id == "acme"
        assert info.expires_at is not None
        left = info.expires_at - datetime.now(UTC)
        assert timedelta(minutes=4) < left <= timedelta(minutes=5)
        assert await lookup_token(pool, secret) == info
        assert not info.allows("log")
        assert not info.allows("admin")

        # Expired in the database: refused by the lookup, and so by a cache that never saw it.
        old, _ = await mint_viewer_token(pool, "acme", timedelta(seconds=3))
        assert await lookup_token(pool, old) is not None
        await asyncio.sleep(3.1)
        assert await lookup_token(pool, old) is None
        assert await TokenCache(pool).resolve(old) is None

        assert await revoke_token(pool, info.token_id)
        assert await lookup_token(pool, secret) is None
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("tenant", "ttl"),
    [("", timedelta(minutes=5)), ("acme", timedelta(0)), ("acme", timedelta(hours=24, seconds=1))],
)
async def test_what_a_viewer_token_cannot_be(
    services: Services, tenant: str, ttl: timedelta
) -> None:
    conn = await asyncpg.connect(services.database_url)
    try:
        with pytest.raises(ValueError, match="viewer token"):
            await mint_viewer_token(conn, tenant, ttl)
    finally:
        await conn.close()


def test_tokens_from_before_the_migration_never_expire(services: Services) -> None:
    name = f"auditlog_viewer_{secrets.token_hex(4)}"
    with scratch_database(services.database_url, name, migrated_to=7) as url:

        async def upgrade() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(
                    "INSERT INTO api_tokens (token_id, token_hash, name, scopes)"
                    " VALUES ('old', $1, 'old', ARRAY['log', 'search'])",
                    hash_token("alt_old_secret"),
                )
                applied = await db.migrate(conn)
                assert "0010_viewer_tokens" in " ".join(applied)
                info = await lookup_token(conn, "alt_old_secret")
                assert info is not None
                assert info.expires_at is None
            finally:
                await conn.close()

        asyncio.run(upgrade())
