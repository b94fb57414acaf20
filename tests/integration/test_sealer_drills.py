"""Sealer drills on real Kafka and PostgreSQL: crashes, rebalances, fencing, dead letters.

In each, N produced events end up exactly N sealed, each once, in offset order per partition,
under signed checkpoints each consistent with the one before.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from auditlog.core.envelope import Envelope, format_received_at
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import tiles_to_fetch
from auditlog.core.note import NoteSigner
from auditlog.core.policy import parse_policy
from auditlog.kafka.clients import dlq_topic
from auditlog.pg.db import fetch_tiles
from auditlog.producer import AuditProducer
from sealer.records import Sealable
from sealer.store import Fenced, Partitions, connect_pool, load_head, partition_name, seal
from sealer.timestamps import micros, received_micros
from tests.conftest import Services
from tests.integration.sealer_harness import (
    SealerFleet,
    WitnessProcess,
    check_exactly_once,
    produce,
    sealed_count,
    wait_sealed,
)

pytestmark = pytest.mark.integration


def _vkey(fleet: SealerFleet) -> str:
    return fleet.key_file.with_suffix(".vkey").read_text().strip()


async def test_kill_minus_nine_mid_stream_then_restart(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    hashes = await produce(services, topic, 4000, "crash")
    victim = fleet.start()
    await wait_sealed(services, topic, 600)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    hashes += await produce(services, topic, 1000, "after")
    fleet.start()
    await wait_sealed(services, topic, len(hashes))
    await asyncio.sleep(0.5)  # anything sealed twice would show up now
    await check_exactly_once(services, topic, hashes, _vkey(fleet))


@pytest.mark.parametrize("topic", [6], indirect=True)
async def test_three_sealers_with_forced_rebalances(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    sealers = [fleet.start() for _ in range(3)]
    producing = asyncio.create_task(produce(services, topic, 6000, "scale"))
    await wait_sealed(services, topic, 1000)
    sealers[0].send_signal(signal.SIGTERM)  # graceful leave: the group rebalances
    await wait_sealed(services, topic, 2500)
    sealers[1].send_signal(signal.SIGKILL)  # crash: rebalance after the session timeout
    fleet.start()
    hashes = await producing
    await wait_sealed(services, topic, len(hashes), within=90)
    await asyncio.sleep(0.5)
    sizes = await check_exactly_once(services, topic, hashes, _vkey(fleet))
    # Events are keyed by tenant, so some partitions may stay empty; most must have a log.
    assert sum(sizes.values()) == len(hashes)
    assert len(sizes) >= 3


@pytest.mark.parametrize("topic", [1], indirect=True)
async def test_two_sealers_on_one_partition_are_fenced(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    # Two consumer groups both own partition 0: only the log head in PostgreSQL stands
    # between them, and it must keep the log single and consistent.
    fleet.start(group="twin-a")
    fleet.start(group="twin-b")
    # Both own the partition, at size 0, before anything is produced: whichever seals second
    # holds a head the other already moved, so at least one seal must be fenced.
    await _wait_for(lambda: {e["sealer"] for e in fleet.events("assigned")} == {0, 1})
    hashes = await produce(services, topic, 3000, "twin")
    await wait_sealed(services, topic, len(hashes))
    await asyncio.sleep(1.0)
    await check_exactly_once(services, topic, hashes, _vkey(fleet))
    fences = fleet.events("fenced")
    assert fences, "two writers of one log and no seal was fenced"
    # Never two checkpoints of one size: the sizes both sealers published are all different,
    # and each is a checkpoint stored in the log's one consistent history (checked above).
    sealed = [(e["size"], e["sealer"]) for e in fleet.events("sealed") if e["events"]]
    sizes = [size for size, _ in sealed]
    assert len(sizes) == len(set(sizes)), f"two seals published one size: {sorted(sealed)}"
    conn = await asyncpg.connect(services.database_url)
    try:
        stored = {
            r["size"]
            for r in await conn.fetch(
                "SELECT size FROM checkpoints WHERE log_id = $1", f"{topic}-0"
            )
        }
    finally:
        await conn.close()
    assert set(sizes) <= stored


async def _wait_for(condition: Callable[[], bool], within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("topic", [1], indirect=True)
async def test_a_stale_head_is_fenced_in_the_database(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    hasher = get_hasher("rfc6962-sha256")
    signer = NoteSigner.from_skey(fleet.key_file.read_text().strip())
    pool = await connect_pool(services.database_url, max_size=2)
    try:
        head = await load_head(pool, topic, 0, "drill.auditlog.test", hasher)
        items = [_item(i) for i in range(3)]
        await Partitions().ensure(pool, head.log_id, [i.received_us for i in items])
        async with pool.acquire() as conn:
            first = await seal(conn, head, hasher, signer, items[:2], 2)
            assert first.head.size == 2
            with pytest.raises(Fenced):
                await seal(conn, head, hasher, signer, items[2:], 3)  # the stale head
            second = await seal(conn, first.head, hasher, signer, items[2:], 3)
        assert second.head.size == 3
    finally:
        await pool.close()
    await check_exactly_once(
        services, topic, [i.envelope.event_hash.hex() for i in items], _vkey(fleet)
    )


async def test_each_seal_extends_the_log_from_the_tiles_the_last_one_wrote(
    services: Services,
) -> None:
    # A seal does not read back the right-edge tiles its previous seal wrote: the head it
    # returns carries them. They must be exactly what the database holds, and a log sealed
    # from heads loaded afresh each time (tiles read back) must come out the same.
    hasher = get_hasher("rfc6962-sha256")
    signer = NoteSigner.generate("edge.auditlog.test")
    topic = f"edge-{secrets.token_hex(4)}"
    batches = [200, 100, 300, 1, 65_536 - 601, 70]  # across tile edges, up to a level-2 tile
    items = [_item(i) for i in range(sum(batches))]
    pool = await connect_pool(services.database_url, max_size=2)
    try:
        await Partitions().ensure(pool, f"{topic}-0", [items[0].received_us])
        await Partitions().ensure(pool, f"{topic}-1", [items[0].received_us])
        carried = await load_head(pool, topic, 0, "edge.auditlog.test", hasher)
        start = 0
        for n in batches:
            async with pool.acquire() as conn:
                result = await seal(
                    conn, carried, hasher, signer, items[start : start + n], start + n
                )
                reread = await load_head(pool, topic, 1, "edge.auditlog.test", hasher)
                assert reread.edge is None
                fresh = await seal(
                    conn, reread, hasher, signer, items[start : start + n], start + n
                )
            carried = result.head
            start += n
            assert carried.edge is not None
            assert (carried.size, carried.root) == (fresh.head.size, fresh.head.root)
            stored = await fetch_tiles(pool, carried.log_id, tiles_to_fetch(carried.size))
            assert dict(carried.edge) == stored
    finally:
        await pool.execute(
            "DELETE FROM events WHERE log_id = ANY($1)", [f"{topic}-0", f"{topic}-1"]
        )
        await pool.close()


async def test_rows_in_the_default_partition_do_not_stop_sealing(
    services: Services, fleet: SealerFleet
) -> None:
    # A month whose rows already sit in events_default cannot get its own partition; the
    # sealer must still seal (into the default partition) instead of retrying forever.
    month = datetime(2099, 3, 15, tzinfo=UTC)
    hasher = get_hasher("rfc6962-sha256")
    signer = NoteSigner.from_skey(fleet.key_file.read_text().strip())
    pool = await connect_pool(services.database_url, max_size=2)
    blocker = f"blocked-{secrets.token_hex(4)}"
    topic = f"default-{secrets.token_hex(4)}"
    try:
        await pool.execute(
            "INSERT INTO events (log_id, idx, event_hash, envelope, received_at, kafka_offset)"
            " VALUES ($1, 0, $2, '{}', $3, 0)",
            blocker, secrets.token_bytes(32), micros(month),
        )  # fmt: skip
        head = await load_head(pool, topic, 0, "drill.auditlog.test", hasher, signer=signer)
        env = Envelope(event={"message": "in 2099"}, received_at=format_received_at(month))
        item = Sealable(0, env, received_micros(env.received_at), None)
        partitions = Partitions()
        await partitions.ensure(pool, head.log_id, [item.received_us])  # gives up, logs it
        assert not await pool.fetchval("SELECT to_regclass('events_2099_03') IS NOT NULL")
        async with pool.acquire() as conn:
            result = await seal(conn, head, hasher, signer, [item], 1)
        assert result.head.size == 1
        leaf = await pool.fetchval(
            "SELECT tableoid::regclass::text FROM events WHERE log_id = $1", head.log_id
        )
        assert leaf == "events_default"
        await check_exactly_once(services, topic, [env.event_hash.hex()], _vkey(fleet))
    finally:
        await pool.execute("DELETE FROM events WHERE log_id = ANY($1)", [blocker, f"{topic}-0"])
        await pool.close()


async def test_each_log_gets_its_own_leaf_of_each_month(services: Services) -> None:
    # A batch across a month boundary: both months split by log, the rows in this log's leaves;
    # a month that is one plain table (as earlier versions made them) stays one and is used.
    times = [datetime(2098, 1, 31, 23, 59, 59, tzinfo=UTC), datetime(2098, 2, 1, tzinfo=UTC)]
    plain = datetime(2098, 3, 2, tzinfo=UTC)
    pool = await connect_pool(services.database_url, max_size=2)
    log_id = f"split-{secrets.token_hex(4)}"
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS events_2098_03 PARTITION OF events"
            " FOR VALUES FROM ('2098-03-01 00:00+00') TO ('2098-04-01 00:00+00')"
        )
        await Partitions().ensure(pool, log_id, [micros(t) for t in [*times, plain]])
        for idx, received in enumerate([*times, plain]):
            await pool.execute(
                "INSERT INTO events (log_id, idx, event_hash, envelope, received_at, kafka_offset)"
                " VALUES ($1, $2, $3, '{}', $4, $2)",
                log_id, idx, secrets.token_bytes(32), micros(received),
            )  # fmt: skip
        rows = await pool.fetch(
            "SELECT idx, tableoid::regclass::text AS leaf FROM events WHERE log_id = $1"
            " ORDER BY idx",
            log_id,
        )
        assert [r["leaf"] for r in rows] == [
            partition_name(2098, 1, log_id),
            partition_name(2098, 2, log_id),
            "events_2098_03",
        ]
    finally:
        await pool.execute("DELETE FROM events WHERE log_id = $1", log_id)
        for name in ("events_2098_01", "events_2098_02", "events_2098_03", "events_2098_04"):
            await pool.execute(f"DROP TABLE IF EXISTS {name}")
        await pool.close()


async def test_next_months_leaf_is_made_ahead_without_waiting_on_locks(
    services: Services,
) -> None:
    # Creating a partition locks its parent: the month after a batch's is made ahead, and gives
    # up at once (to try again later) while a search or seal holds the lock, instead of making
    # every seal queue behind it.
    log_id = f"ahead-{secrets.token_hex(4)}"
    months = [partition_name(2097, m) for m in (8, 9, 10)]
    pool = await connect_pool(services.database_url, max_size=2)
    holder = await asyncpg.connect(services.database_url)
    partitions = Partitions(retry_after=0)
    try:
        await partitions.ensure(pool, log_id, [micros(datetime(2097, 8, 10, tzinfo=UTC))])
        assert await _existing(pool, [partition_name(2097, m, log_id) for m in (8, 9)]) == 2

        async with holder.transaction():
            await holder.execute("LOCK TABLE events IN ACCESS SHARE MODE")
            september = [micros(datetime(2097, 9, 1, tzinfo=UTC))]
            await asyncio.wait_for(partitions.ensure(pool, log_id, september), timeout=5)
            assert await _existing(pool, [months[2]]) == 0  # deferred, not waited for

        await partitions.ensure(pool, log_id, [micros(datetime(2097, 9, 2, tzinfo=UTC))])
        assert await _existing(pool, [months[2], partition_name(2097, 10, log_id)]) == 2
    finally:
        await holder.close()
        for name in months:
            await pool.execute(f"DROP TABLE IF EXISTS {name}")
        await pool.close()


async def _existing(pool: asyncpg.Pool, names: list[str]) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM unnest($1::text[]) n WHERE to_regclass(n) IS NOT NULL", names
    )
    return count


def _item(i: int) -> Sealable:
    env = Envelope(event={"message": f"fence {i}"}, received_at="2026-11-25T10:00:00.000000Z")
    return Sealable(i, env, received_micros(env.received_at), None)


@pytest.mark.parametrize("topic", [1], indirect=True)
async def test_malformed_records_go_to_the_dead_letter_topic(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    good = Envelope(event={"message": "good"}, received_at="2026-11-25T10:00:00.000000Z")
    values = [
        orjson.dumps({"message": "plain event", "actor": "kcat"}),
        b"\x00 not json",
        b'{"received_at":"2026-11-25T10:00:00.000000Z", "event":{"message":"unsorted"}}',
        orjson.dumps({"message": "m", "colour": "red"}),
        good.canonical,
    ]
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, headers=[("trace", b"t1")])
    finally:
        await producer.stop()
    fleet.start()
    await wait_sealed(services, topic, 2)

    consumer = AIOKafkaConsumer(
        dlq_topic(topic),
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        dead = []
        while len(dead) < 3:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"dead letters missing; got {len(dead)}"
            dead += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    by_offset = {int(dict(r.headers)["dlq-offset"]): r for r in dead}
    assert sorted(by_offset) == [1, 2, 3]
    reasons = {o: dict(r.headers)["dlq-reason"].decode() for o, r in by_offset.items()}
    assert reasons == {1: "not-json", 2: "non-canonical-envelope", 3: "invalid-event"}
    assert "colour" in dict(by_offset[3].headers)["dlq-detail"].decode()
    assert by_offset[1].value == values[1]
    assert dict(by_offset[1].headers)["trace"] == b"t1"
    assert await sealed_count(services, topic) == 2


@pytest.mark.parametrize("topic", [1], indirect=True)
async def test_a_retried_event_with_the_same_idempotency_key_is_sealed_once(
    services: Services, topic: str, fleet: SealerFleet
) -> None:
    async with AuditProducer(services.kafka_bootstrap, topic) as producer:
        first = await producer.log({"message": "pay", "tenant_id": "acme"}, idempotency_key="k1")
        await producer.log({"message": "pay", "tenant_id": "acme"}, idempotency_key="k1")
        other = await producer.log({"message": "pay", "tenant_id": "globex"}, idempotency_key="k1")
        plain = await producer.log({"message": "no key"})
    fleet.start()
    await wait_sealed(services, topic, 3)
    await asyncio.sleep(1.0)
    await check_exactly_once(services, topic, [first, other, plain], _vkey(fleet))
    # Exactly the one retry was skipped (every "sealed" line has the field; its sum counts).
    assert sum(e["duplicates"] for e in fleet.events("sealed")) == 1


@pytest.mark.parametrize("topic", [1], indirect=True)
async def test_witnessed_checkpoints_wait_for_the_quorum_and_carry_cosignatures(
    services: Services, topic: str, fleet: SealerFleet, tmp_path: Path
) -> None:
    origin = f"drill.auditlog.test/{topic}/0"
    witness = WitnessProcess(tmp_path, origin, _vkey(fleet))
    witness.start()
    try:
        policy_text = f"log {_vkey(fleet)}\nwitness w1 {witness.vkey()} {witness.url}\nquorum w1\n"
        policy_file = tmp_path / "policy"
        policy_file.write_text(policy_text)
        fleet.start(AUDITLOG_WITNESS_POLICY_FILE=str(policy_file), AUDITLOG_WITNESS_TIMEOUT="0.5")
        hashes = await produce(services, topic, 600, "witnessed")
        await wait_sealed(services, topic, len(hashes))

        # Witness down: nothing more is sealed, because nothing could be published.
        witness.stop()
        more = await produce(services, topic, 50, "while down")
        await asyncio.sleep(1.5)  # three witness timeouts: a seal that did not wait would show
        assert await sealed_count(services, topic) == len(hashes)
        witness.start()
        await wait_sealed(services, topic, len(hashes) + len(more))
        await asyncio.sleep(0.5)
        await check_exactly_once(services, topic, hashes + more, _vkey(fleet))
    finally:
        witness.stop()

    policy = parse_policy(policy_text)
    conn = await asyncpg.connect(services.database_url)
    try:
        notes = await conn.fetch(
            "SELECT note FROM checkpoints WHERE log_id = $1 ORDER BY size", f"{topic}-0"
        )
        head = await conn.fetchval("SELECT checkpoint FROM logs WHERE log_id = $1", f"{topic}-0")
    finally:
        await conn.close()
    assert len(notes) >= 2
    for row in notes:
        assert set(policy.verify(row["note"], origin=origin).cosigners) == {"w1"}
    assert head == notes[-1]["note"]
    assert "NotWitnessed" in fleet.logs() or "seal_failed" in fleet.logs()
