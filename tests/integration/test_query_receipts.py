"""Receipts from the query service's caches, on PostgreSQL: proofs, heads and checkpoints agree.

* ``ProofBuilder.inclusion`` (tile and tile-interior caches) gives exactly the proofs of the pure
  core (:func:`auditlog.core.proof.inclusion_proof`, checked against the RFC reference in the unit
  tests) for every kind of leaf, at many sizes, while stored tiles grow and caches evict.
* ``HeadCache`` reuses a head only within its TTL and only for entries below its size, shares
  one read among concurrent requests, and never mixes a size with another head's checkpoint.
* Over HTTP, while the log grows under a long TTL, every receipt verifies against the signed
  checkpoint it carries.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.hashing import PANGEA_SHA256, RFC6962_SHA256, LogHasher, get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.note import NoteSigner, open_note, sign_note
from auditlog.core.proof import inclusion_proof, root_from_tiles, verify_inclusion
from auditlog.core.receipt import Receipt
from auditlog.core.tiles import TileID
from auditlog.pg.tokens import create_token
from query.app import create_app, lifespan
from query.heads import HeadCache
from query.proofs import LogHead, ProofBuilder
from query.settings import Settings
from sealer.store import Partitions
from sealer.timestamps import micros
from tests.conftest import Services

pytestmark = pytest.mark.integration

Tiles = dict[TileID, bytes]


def _leaves(hasher: LogHasher, lo: int, hi: int) -> list[bytes]:
    return [hasher.hash_leaf(i.to_bytes(8, "big")) for i in range(lo, hi)]


def _grow(hasher: LogHasher, store: Tiles, size: int, new: int) -> Tiles:
    """Append ``new`` leaves to a log of ``size``; returns the tiles written (and updates store)."""
    edge = {t: store[t] for t in tiles_to_fetch(size)}
    result = integrate(hasher, size, edge, _leaves(hasher, size, size + new))
    store.update(result.tiles)
    return dict(result.tiles)


class Log:
    """A log written to PostgreSQL the way the sealer does: events, tiles and head together."""

    def __init__(self, conn: asyncpg.Connection, scheme: str, signer: NoteSigner) -> None:
        self.conn, self.hasher, self.signer = conn, get_hasher(scheme), signer
        self.scheme = scheme
        self.log_id = f"receipts-{secrets.token_hex(4)}"
        self.origin = f"receipts.test/{self.log_id}"
        self.tiles: Tiles = {}
        self.size = 0

    async def create(self) -> None:
        # Rows dated now() must land in their month's partition, as the sealer's do: rows of a
        # month in the default partition would keep the sealer from creating it.
        await Partitions().ensure(self.conn, self.log_id, [micros(datetime.now(UTC))])
        await self.conn.execute(
            "INSERT INTO logs (log_id, origin, topic, kafka_partition, hash_scheme, root)"
            " VALUES ($1, $2, $1, 0, $3, $4)",
            self.log_id, self.origin, self.scheme, self.hasher.empty_root(),
        )  # fmt: skip

    async def append(self, count: int, tenants: Sequence[str | None] = (None,)) -> None:
        written = _grow(self.hasher, self.tiles, self.size, count)
        first, self.size = self.size, self.size + count
        root = root_from_tiles(self.hasher, self.size, self.tiles)
        note = sign_note(Checkpoint(self.origin, self.size, root).to_text(), [self.signer])
        async with self.conn.transaction():
            await self.conn.executemany(
                "INSERT INTO tiles (log_id, level, idx, data) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (log_id, level, idx) DO UPDATE SET data = EXCLUDED.data",
                [(self.log_id, t.level, t.index, d) for t, d in written.items()],
            )
            await self.conn.executemany(
                "INSERT INTO events (log_id, idx, event_hash, envelope, received_at,"
                " kafka_offset, tenant_id) VALUES ($1, $2, $3, $4, now(), $2, $5)",
                [
                    (self.log_id, i, secrets.token_bytes(32), b"{}", tenants[i % len(tenants)])
                    for i in range(first, self.size)
                ],
            )
            await self.conn.execute(
                "UPDATE logs SET size = $2, root = $3, checkpoint = $4 WHERE log_id = $1",
                self.log_id, self.size, root, note,
            )  # fmt: skip

    def head(self, size: int) -> LogHead:
        root = root_from_tiles(self.hasher, size, self.tiles)
        return LogHead(self.log_id, self.origin, self.scheme, size, root, f"size {size}\n")


@asynccontextmanager
async def _connect(services: Services) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Connection]]:
    pool = await asyncpg.create_pool(services.database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            yield pool, conn
    finally:
        await pool.close()


def _indexes(size: int, rng: random.Random) -> list[int]:
    edges = {0, 1, 255, 256, 257, 65535, 65536, size - 257, size - 256, size - 2, size - 1}
    return sorted({i for i in edges if 0 <= i < size} | {rng.randrange(size) for _ in range(60)})


@pytest.mark.parametrize("scheme", [RFC6962_SHA256, PANGEA_SHA256])
async def test_cached_proofs_equal_the_core_proofs_as_the_log_grows(
    services: Services, scheme: str
) -> None:
    rng = random.Random(6962)
    async with _connect(services) as (pool, conn):
        log = Log(conn, scheme, NoteSigner.generate("receipts.test"))
        await log.create()
        # A tiny cache evicts constantly; a large one keeps tiles that later grow in place.
        builders = [ProofBuilder(pool, tile_limit=16, node_limit=64),
                    ProofBuilder(pool, tile_limit=4096, node_limit=65536)]  # fmt: skip
        for batch in (300, 1, 65_000, 255, 70_000):
            await log.append(batch)
            sizes = {log.size, max(1, log.size - 1), rng.randrange(1, log.size + 1)}
            for size in sorted(sizes):
                head = log.head(size)
                for index in _indexes(size, rng):
                    expected = inclusion_proof(log.hasher, index, size, log.tiles)
                    for builder in builders:
                        assert await builder.inclusion(head, index) == expected, (size, index)
                    leaf = log.hasher.hash_leaf(index.to_bytes(8, "big"))
                    verify_inclusion(log.hasher, index, size, leaf, expected, head.root)
                if scheme == PANGEA_SHA256:
                    picked = _indexes(size, rng)[:8]
                    strings = await builders[0].pangea_memberships(head, picked)
                    for index, text in zip(picked, strings, strict=True):
                        hashes = [bytes.fromhex(item[2:]) for item in text.split(",") if item]
                        assert hashes == inclusion_proof(log.hasher, index, size, log.tiles)


def _database_reads() -> float:
    value = REGISTRY.get_sample_value("auditlog_query_head_reads_total", {"source": "database"})
    return value or 0.0


async def test_head_cache_reuses_heads_only_within_ttl_and_size(services: Services) -> None:
    now = [1000.0]
    async with _connect(services) as (pool, conn), asyncio.TaskGroup() as tasks:
        log = Log(conn, RFC6962_SHA256, NoteSigner.generate("receipts.test"))
        await log.create()
        heads = HeadCache(pool, ttl=5.0, clock=lambda: now[0], spawn=tasks.create_task)
        assert await heads.covering(log.log_id, 0) is None  # nothing signed yet
        assert await heads.covering("no-such-log", 0) is None
        await log.append(10)
        first = await heads.covering(log.log_id, 9)
        assert first is not None and first.size == 10

        await log.append(5)
        # Within the TTL an older entry is served from the cached head, which is whole.
        reads = _database_reads()
        assert await heads.covering(log.log_id, 3) is first
        assert _database_reads() == reads
        # An entry the cached head does not hold reads the head again.
        newer = await heads.covering(log.log_id, 12)
        assert newer is not None and newer.size == 15
        assert _database_reads() == reads + 1

        await log.append(1)
        now[0] += 5.1  # expired, within the second TTL: served stale while one read replaces it
        reads = _database_reads()
        assert await heads.covering(log.log_id, 0) is newer
        assert await heads.covering(log.log_id, 1) is newer
        await _settle(heads)
        assert _database_reads() == reads + 1
        latest = await heads.covering(log.log_id, 0)
        assert latest is not None and latest.size == 16
        # Every head is one row: size, root and checkpoint signed together.
        for head in (first, newer, latest):
            checkpoint = Checkpoint.from_text(
                open_note(head.checkpoint, [log.signer.verifier]).text
            )
            assert (checkpoint.size, checkpoint.root) == (head.size, head.root)

        # Beyond twice the TTL a head is not served: concurrent requests share one read.
        await log.append(1)
        now[0] += 10.1
        reads = _database_reads()
        got = await asyncio.gather(*(heads.covering(log.log_id, 0) for _ in range(20)))
        assert _database_reads() == reads + 1
        assert all(h is got[0] for h in got)
        assert got[0] is not None and got[0].size == 17

        uncached = HeadCache(pool, ttl=0.0, clock=lambda: now[0], spawn=tasks.create_task)
        reads = _database_reads()
        await uncached.covering(log.log_id, 0)
        await uncached.covering(log.log_id, 0)
        assert _database_reads() == reads + 2


async def _settle(heads: HeadCache) -> None:
    for _ in range(200):
        if not heads._pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the background read of the head never finished")


async def test_a_failed_head_read_fails_its_waiters_not_the_service(services: Services) -> None:
    now = [1000.0]
    async with _connect(services) as (pool, conn), asyncio.TaskGroup() as tasks:
        log = Log(conn, RFC6962_SHA256, NoteSigner.generate("receipts.test"))
        await log.create()
        await log.append(3)
        heads = HeadCache(pool, ttl=5.0, clock=lambda: now[0], spawn=tasks.create_task)
        cached = await heads.covering(log.log_id, 0)
        assert cached is not None
        broken = await asyncpg.create_pool(services.database_url, min_size=1, max_size=1)
        await broken.close()  # every read through it now fails
        heads._pool = broken
        # Stale: still served, and the background read's failure is logged, not raised.
        now[0] += 6
        with capture_logs() as logs:
            assert await heads.covering(log.log_id, 0) is cached
            await _settle(heads)
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["head_read_failed"]
        # Too old to serve: the waiter gets the error; the next read, through a working pool,
        # answers.
        now[0] += 10
        with pytest.raises(asyncpg.InterfaceError), capture_logs():
            await heads.covering(log.log_id, 0)
        heads._pool = pool
        again = await heads.covering(log.log_id, 2)
        assert again is not None and again.size == 3


def _with_state(app: Any, state: dict[str, Any]) -> Any:
    """What uvicorn does for a lifespan that yields state: a copy in every request's scope."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["state"] = dict(state)
        await app(scope, receive, send)

    return asgi


async def test_receipts_verify_against_their_own_checkpoint_while_the_log_grows(
    services: Services,
) -> None:
    signer = NoteSigner.generate("receipts.test")
    verifier = signer.verifier
    settings = Settings.from_env(
        {"AUDITLOG_DATABASE_URL": services.database_url, "AUDITLOG_QUERY_HEAD_TTL_SECONDS": "600"}
    )
    async with _connect(services) as (_, conn):
        log = Log(conn, RFC6962_SHA256, signer)
        await log.create()
        token, _ = await create_token(conn, "receipts", {"search"})
        tenant_token, _ = await create_token(conn, "receipts-t1", {"search"}, tenant_id="t1")
        async with lifespan(settings) as state:
            app = _with_state(create_app(settings), state)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

                async def receipt(index: int, bearer: str = token) -> httpx.Response:
                    return await http.get(
                        f"/v1/logs/{log.log_id}/receipts/{index}",
                        headers={"Authorization": f"Bearer {bearer}"},
                    )

                seen_sizes = set()
                for batch in (3, 300, 1, 700):
                    await log.append(batch, tenants=("t1", "t2"))
                    for index in sorted({0, 1, log.size // 2, log.size - 1}):
                        resp = await receipt(index)
                        assert resp.status_code == 200, resp.text
                        parsed = Receipt.from_text(resp.text)
                        note = open_note(parsed.checkpoint, [verifier])
                        checkpoint = Checkpoint.from_text(note.text)
                        # The cached head may be older than the log, never older than the entry.
                        assert index < checkpoint.size <= log.size
                        seen_sizes.add(checkpoint.size)
                        leaf = log.hasher.hash_leaf(index.to_bytes(8, "big"))
                        verify_inclusion(
                            log.hasher, index, checkpoint.size, leaf, parsed.proof, checkpoint.root
                        )
                # Heads were reused (a 600 s TTL) and refreshed for new entries.
                assert len(seen_sizes) > 1
                assert min(seen_sizes) < log.size
                # Tenant isolation holds on the cached path: t2's entries are not t1's.
                assert (await receipt(1, tenant_token)).status_code == 404
                assert (await receipt(0, tenant_token)).status_code == 200
                assert (await receipt(log.size, token)).status_code == 404
                # Without a tenant no row is read: the head alone decides what exists.
                assert (await receipt(log.size + 10**9, token)).status_code == 404
                assert (await receipt(-1, token)).status_code == 404
                missing = await http.get(
                    "/v1/logs/no-such-log/receipts/0", headers={"Authorization": f"Bearer {token}"}
                )
                assert missing.status_code == 404
