"""The token cache: known tokens survive floods and short outages; revocation still bites."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from auditlog.pg.tokens import TokenCache, hash_token


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Database:
    """Stands in for the pool: a table of token hashes, and a switch that takes it down."""

    def __init__(self) -> None:
        self.rows: dict[bytes, dict[str, Any]] = {}
        self.down = False
        self.queries = 0
        self.running = 0
        self.most_running = 0

    def add(self, token: str, tenant: str | None = None) -> None:
        self.rows[hash_token(token)] = {
            "token_id": token[-4:], "name": "t", "scopes": ["log"], "tenant_id": tenant,
        }

    async def fetchrow(self, _sql: str, token_hash: bytes) -> dict[str, Any] | None:
        self.queries += 1
        if self.down:
            raise ConnectionRefusedError("database down")
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(0.001)
        self.running -= 1
        return self.rows.get(token_hash)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def cache(db: Database, clock: Clock, **kw: Any) -> TokenCache:
    return TokenCache(db, clock=clock, **kw)  # type: ignore[arg-type]


async def test_a_known_token_costs_one_query_per_ttl(clock: Clock) -> None:
    db = Database()
    db.add("alt_good")
    tc = cache(db, clock, ttl=5)
    for _ in range(10):
        info = await tc.resolve("alt_good")
        assert info is not None
        assert info.allows("log")
    assert db.queries == 1
    clock.now += 5
    await tc.resolve("alt_good")
    assert db.queries == 2


async def test_revocation_takes_effect_after_the_ttl(clock: Clock) -> None:
    db = Database()
    db.add("alt_good")
    tc = cache(db, clock, ttl=5)
    assert await tc.resolve("alt_good") is not None
    db.rows.clear()
    assert await tc.resolve("alt_good") is not None  # within the ttl
    clock.now += 5
    assert await tc.resolve("alt_good") is None


async def test_made_up_tokens_evict_no_known_one(clock: Clock) -> None:
    db = Database()
    db.add("alt_good")
    tc = cache(db, clock, max_entries=3)
    await tc.resolve("alt_good")
    for i in range(50):
        assert await tc.resolve(f"alt_random_{i}") is None
    queries = db.queries
    assert await tc.resolve("alt_good") is not None
    assert db.queries == queries  # still cached
    assert await tc.resolve("alt_random_49") is None
    assert db.queries == queries  # the latest unknown ones are remembered too


async def test_an_overlong_token_costs_no_query(clock: Clock) -> None:
    db = Database()
    assert await cache(db, clock).resolve("x" * 10_000) is None
    assert db.queries == 0


async def test_a_flood_of_unknown_tokens_holds_few_connections(clock: Clock) -> None:
    db = Database()
    tc = cache(db, clock, max_lookups=4)
    answers = await asyncio.gather(*(tc.resolve(f"alt_r{i}") for i in range(100)))
    assert answers == [None] * 100
    assert db.most_running <= 4


async def test_known_tokens_work_through_a_short_outage_and_not_longer(clock: Clock) -> None:
    db = Database()
    db.add("alt_good")
    tc = cache(db, clock, ttl=5, grace=60)
    assert await tc.resolve("alt_good") is not None
    db.down = True
    clock.now += 30  # past the ttl, within the grace window: the lookup fails, the grant holds
    assert await tc.resolve("alt_good") is not None
    clock.now += 40  # past ttl + grace
    with pytest.raises(ConnectionRefusedError):
        await tc.resolve("alt_good")


async def test_a_token_never_seen_is_not_accepted_during_an_outage(clock: Clock) -> None:
    db = Database()
    db.add("alt_other")
    db.down = True
    with pytest.raises(ConnectionRefusedError):
        await cache(db, clock).resolve("alt_other")
