"""Idempotency claims in the seal transaction, on PostgreSQL (sealer/claims.py): each
(principal, tenant, key) is claimed exactly once, across logs and concurrent seals, without
deadlocks; a same-key event of other content is a conflict; claims name the sealed entry (the
lookup by key is tests/integration/test_idempotency_receipts.py); schema 6 keeps older claims."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteSigner
from auditlog.pg import db
from sealer.claims import IDEMPOTENCY_CONFLICT, Conflict, content_digest
from sealer.records import Sealable
from sealer.store import LogHead, Partitions, SealResult, connect_pool, load_head, seal
from sealer.timestamps import received_micros
from tests.conftest import Services

pytestmark = pytest.mark.integration

HASHER = get_hasher("rfc6962-sha256")
SIGNER = NoteSigner.generate("claims.auditlog.test")
WINDOW = timedelta(hours=1)
LOGS, KEYS, ROUNDS = 4, 2000, 5


@pytest.fixture
async def pool(services: Services) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect_pool(services.database_url, max_size=8)
    yield pool
    await pool.close()


def _item(
    offset: int,
    message: str,
    key: str | None,
    *,
    tenant: str | None = None,
    principal: str = "kafka",
    attempt: int = 0,
) -> Sealable:
    event = {"message": message} if tenant is None else {"message": message, "tenant_id": tenant}
    # Each attempt is received at another time: its envelope (and hash) differ, its content not.
    received_at = format_received_at(datetime(2026, 12, 4, 12, 0, attempt, tzinfo=UTC))
    env = Envelope(event=event, received_at=received_at)
    return Sealable(offset, env, received_micros(received_at), key, None, principal)


async def _heads(pool: asyncpg.Pool, n: int) -> list[LogHead]:
    topic = f"claims-{secrets.token_hex(4)}"
    heads = [await load_head(pool, topic, p, "claims.auditlog.test", HASHER) for p in range(n)]
    for head in heads:
        await Partitions().ensure(pool, head.log_id, [_item(0, "x", None).received_us])
    return heads


async def _seal(
    pool: asyncpg.Pool, head: LogHead, items: Sequence[Sealable], window: timedelta = WINDOW
) -> tuple[SealResult, list[Conflict]]:
    seen: list[Conflict] = []

    async def conflicted(conflicts: Sequence[Conflict]) -> None:
        seen.extend(conflicts)

    async with pool.acquire() as conn:
        result = await seal(
            conn, head, HASHER, SIGNER, items, items[-1].offset + 1, window, None, conflicted
        )
    return result, seen


async def _sealed(pool: asyncpg.Pool, head: LogHead) -> list[tuple[int, bytes]]:
    rows = await pool.fetch(
        "SELECT idx, event_hash FROM events WHERE log_id = $1 ORDER BY idx", head.log_id
    )
    return [(r["idx"], bytes(r["event_hash"])) for r in rows]


async def test_concurrent_seals_of_two_logs_claim_each_key_once_without_deadlock(
    pool: asyncpg.Pool,
) -> None:
    # Four logs sealed at once, each batch holding the same 2,000 keys in its own shuffled
    # order (the copies of untenanted retries that landed on several partitions). Claimed in
    # batch order, two transactions lock keys in opposite orders: PostgreSQL's deadlock
    # detector killed one (DeadlockDetectedError, issue 21; this test fails that way when the
    # claims are not sorted). Five rounds, each a new set of keys.
    rng = random.Random(21)
    heads = await _heads(pool, LOGS)
    total = 0
    for round_ in range(ROUNDS):
        keys = [f"r{round_}-k{i}" for i in range(KEYS)]
        batches = []
        for p in range(LOGS):
            order = keys[:]
            rng.shuffle(order)
            offset = heads[p].next_offset
            batches.append(
                [_item(offset + i, f"event {k}", k, attempt=p) for i, k in enumerate(order)]
            )
        results = await asyncio.gather(
            *(_seal(pool, h, b) for h, b in zip(heads, batches, strict=True))
        )
        heads = [r.head for r, _ in results]
        assert all(not conflicts for _, conflicts in results)
        sealed = sum(len(b) - r.duplicates for (r, _), b in zip(results, batches, strict=True))
        assert sealed == KEYS, f"round {round_}: {sealed} of {KEYS} keys sealed"
        total += sealed
    rows = [row for head in heads for row in await _sealed(pool, head)]
    assert len(rows) == total == KEYS * ROUNDS
    claims = await pool.fetch(
        "SELECT k.key, e.envelope FROM idempotency_keys k"
        " JOIN events e ON e.log_id = k.log_id AND e.idx = k.idx"
        " WHERE k.log_id = ANY($1::text[])",
        [h.log_id for h in heads],
    )
    # Each claim names its own event: the event sealed under that key.
    assert len(claims) == KEYS * ROUNDS
    assert all(f'"event {r["key"]}"'.encode() in bytes(r["envelope"]) for r in claims)


async def test_a_same_key_event_of_other_content_is_a_conflict_and_the_rest_renumbered(
    pool: asyncpg.Pool,
) -> None:
    [head] = await _heads(pool, 1)
    first, _ = await _seal(pool, head, [_item(0, "pay 10", "k1"), _item(1, "pay 20", "k2")])
    batch = [
        _item(2, "before", None),
        _item(3, "pay 10", "k1", attempt=1),  # a retry: same content, another received_at
        _item(4, "pay 99", "k2", attempt=1),  # another event under k2: a conflict
        _item(5, "pay 30", "k3"),
        _item(6, "pay 31", "k3", attempt=1),  # within the batch: k3 taken by offset 5
        _item(7, "pay 30", "k3", attempt=2),  # within the batch: a retry of offset 5
        _item(8, "pay 10", "k1", principal="token:other"),  # another namespace
        _item(9, "pay 10", "k1", tenant="acme"),  # another tenant
    ]
    result, conflicts = await _seal(pool, first.head, batch)
    assert result.duplicates == 2
    assert [(c.item.offset, c.rejected().reason) for c in conflicts] == [
        (4, IDEMPOTENCY_CONFLICT),
        (6, IDEMPOTENCY_CONFLICT),
    ]
    assert result.conflicts == tuple(conflicts)
    assert f"log {head.log_id} index 1" in conflicts[0].detail
    rejected = conflicts[0].rejected()
    assert rejected.record.value == batch[2].envelope.canonical
    assert dict(rejected.record.headers) == {"idempotency-key": b"k2", "principal": b"kafka"}
    sealed = await _sealed(pool, head)
    kept = [batch[0], batch[3], batch[6], batch[7]]
    assert sealed[2:] == [(2 + i, item.envelope.event_hash) for i, item in enumerate(kept)]
    # The claims won in this batch name their entries after the losers were left out.
    claims = {
        (r["principal"], r["tenant_id"], r["key"]): (r["idx"], bytes(r["digest"]))
        for r in await pool.fetch(
            "SELECT principal, tenant_id, key, idx, digest FROM idempotency_keys WHERE log_id = $1",
            head.log_id,
        )
    }
    assert claims == {
        ("kafka", "", "k1"): (0, content_digest(batch[1].envelope)),
        ("kafka", "", "k2"): (1, content_digest(_item(1, "pay 20", "k2").envelope)),
        ("kafka", "", "k3"): (3, content_digest(batch[3].envelope)),
        ("token:other", "", "k1"): (4, content_digest(batch[6].envelope)),
        ("kafka", "acme", "k1"): (5, content_digest(batch[7].envelope)),
    }


async def test_an_expired_key_is_claimed_again(pool: asyncpg.Pool) -> None:
    [head] = await _heads(pool, 1)
    first, _ = await _seal(pool, head, [_item(0, "pay", "k-exp")])
    again, _ = await _seal(pool, first.head, [_item(1, "pay", "k-exp", attempt=1)])
    assert again.duplicates == 1  # within the window
    await asyncio.sleep(0.3)
    later, conflicts = await _seal(
        pool, again.head, [_item(2, "other", "k-exp", attempt=2)], timedelta(seconds=0.2)
    )
    assert later.duplicates == 0 and not conflicts
    assert [idx for idx, _ in await _sealed(pool, head)] == [0, 1]
    idx = await pool.fetchval(
        "SELECT idx FROM idempotency_keys WHERE log_id = $1 AND key = 'k-exp'", head.log_id
    )
    assert idx == 1


async def test_migration_6_keeps_the_claims_made_before_it(services: Services) -> None:
    name = f"auditlog_mig6_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(services.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(db.database_url(services.database_url, name))
    try:
        await db.migrate(conn, up_to=5)
        await conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, key, log_id, idx)"
            " VALUES ('acme', 'k', 't-0', 7)"
        )
        assert await db.migrate(conn) == [f for v, f, _ in db.migrations() if v >= 6]
        old = await conn.fetchrow(
            "SELECT principal, tenant_id, key, digest, idx FROM idempotency_keys"
        )
        assert dict(old) == {
            "principal": "",
            "tenant_id": "acme",
            "key": "k",
            "digest": None,
            "idx": 7,
        }
        # The same tenant and key of a principal is another claim.
        await conn.execute(
            "INSERT INTO idempotency_keys (principal, tenant_id, key, log_id, idx)"
            " VALUES ('kafka', 'acme', 'k', 't-0', 8)"
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO idempotency_keys (principal, tenant_id, key, log_id, idx)"
                " VALUES ('kafka', 'acme', 'k', 't-1', 9)"
            )
    finally:
        await conn.close()
        await db.drop_database(services.database_url, name)
