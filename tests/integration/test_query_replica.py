"""The query service reads receipts from a streaming replica, within its lag bound.

A PostgreSQL primary of this module's own with an asynchronous replica; a sealer on the shared
Kafka writes the primary; two query processes read the replica
(``AUDITLOG_QUERY_DATABASE_URL``), one with a lag bound of an hour, one of one second. While the
replica keeps up, both answer receipts from it (``Auditlog-Read-From: replica``) and the receipts
verify. With the replica's replay paused, a newly sealed event is unknown to the first (404: it
read the replica, which does not have it yet) while the second, once the replica is more than a
second behind, answers from the primary with a receipt that verifies; resumed, the replica
answers again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from auditlog.cli.keys import write_signing_key
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteVerifier
from auditlog.core.receipt import Receipt, verify_receipt
from auditlog.devstack import postgres_replica
from auditlog.devstack.config import StackConfig
from auditlog.kafka.clients import dlq_topic, ensure_topics
from auditlog.producer import AuditProducer
from tests.conftest import Services, delete_topics, migrate_database, start_service, stop_processes
from tests.e2e.conftest import make_token
from tests.integration.own_stack import free_port, separate_postgres

pytestmark = pytest.mark.integration

ORIGIN = "replica.auditlog.test"


@dataclass(frozen=True)
class Setup:
    services: Services  # the shared Kafka, this module's primary
    strict: str  # a query service that always reads the replica (bound: an hour)
    bounded: str  # one that reads the primary once the replica is a second behind
    token: str
    verifier: NoteVerifier
    cfg: StackConfig  # the primary's (and, through it, the replica's)


@pytest.fixture(scope="module")
def setup(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("replica")
    with separate_postgres(work / "home") as cfg:
        migrate_database(cfg.database_url)
        replica_port = free_port()
        postgres_replica.start_replica(cfg, replica_port, print, synchronous=False)
        topic = f"{services.topic}.replica"
        asyncio.run(ensure_topics(services.kafka_bootstrap, topic, partitions=1))
        own = Services(services.kafka_bootstrap, cfg.database_url, topic)
        key = work / "log.skey"
        vkey = write_signing_key(key, ORIGIN)
        base = {
            **os.environ,
            "AUDITLOG_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
            "AUDITLOG_DATABASE_URL": cfg.database_url,
            "AUDITLOG_TOPIC": topic,
            "AUDITLOG_ORIGIN": ORIGIN,
            "AUDITLOG_SIGNING_KEY_FILE": str(key),
            "AUDITLOG_SEALER_GROUP_ID": f"sealer-{topic}",
            "AUDITLOG_BATCH_MAX_AGE": "0.05",
            "AUDITLOG_BATCH_MIN_INTERVAL": "0",  # tests wait on each seal: no spacing
            "AUDITLOG_QUERY_WORKERS": "1",
            "AUDITLOG_QUERY_DATABASE_URL": postgres_replica.replica_url(cfg, replica_port),
        }
        metrics = free_port()
        procs = [
            start_service(
                "sealer",
                {**base, "AUDITLOG_SEALER_METRICS_PORT": str(metrics)},
                work / "sealer.log",
                f"http://127.0.0.1:{metrics}/healthz",
            )
        ]
        urls = []
        for name, bound in (("strict", "3600"), ("bounded", "1")):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**base, "AUDITLOG_PORT": str(port), "AUDITLOG_QUERY_REPLICA_MAX_LAG": bound}
            procs.append(start_service("query", env, work / f"query-{name}.log", f"{url}/readyz"))
            urls.append(url)
        try:
            token = make_token(own, {"log", "search"})
            yield Setup(own, urls[0], urls[1], token, NoteVerifier.from_vkey(vkey), cfg)
        finally:
            stop_processes(procs)
            asyncio.run(_delete_topic(services, topic))


async def _delete_topic(services: Services, topic: str) -> None:
    await delete_topics(services.kafka_bootstrap, [topic, dlq_topic(topic)])


async def _seal_one(setup: Setup, message: str) -> str:
    async with AuditProducer(setup.services.kafka_bootstrap, setup.services.topic) as producer:
        event_hash = await producer.log({"message": message})
    conn = await asyncpg.connect(setup.services.database_url)
    try:
        deadline = time.monotonic() + 30
        while not await conn.fetchval(
            "SELECT 1 FROM events WHERE event_hash = $1", bytes.fromhex(event_hash)
        ):
            assert time.monotonic() < deadline, "not sealed on the primary"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return event_hash


async def _receipt(setup: Setup, base: str, event_hash: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(
            f"{base}/v1/receipts/{event_hash}",
            headers={"Authorization": f"Bearer {setup.token}"},
        )


async def _until(setup: Setup, base: str, event_hash: str, source: str) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        resp = await _receipt(setup, base, event_hash)
        if resp.status_code == 200 and resp.headers["auditlog-read-from"] == source:
            return resp
        assert time.monotonic() < deadline, (resp.status_code, resp.headers, resp.text)
        await asyncio.sleep(0.2)


async def _verifies(setup: Setup, event_hash: str, receipt_text: str) -> None:
    conn = await asyncpg.connect(setup.services.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT e.envelope, l.hash_scheme, l.origin FROM events e JOIN logs l USING (log_id)"
            " WHERE e.event_hash = $1",
            bytes.fromhex(event_hash),
        )
    finally:
        await conn.close()
    assert row is not None
    hasher = get_hasher(row["hash_scheme"])
    receipt = Receipt.from_text(receipt_text)
    verify_receipt(receipt, bytes(row["envelope"]), [setup.verifier], hasher, origin=row["origin"])


async def test_receipts_come_from_the_replica_within_the_bound_else_from_the_primary(
    setup: Setup,
) -> None:
    first = await _seal_one(setup, "before the pause")
    for base in (setup.strict, setup.bounded):
        resp = await _until(setup, base, first, "replica")
        await _verifies(setup, first, resp.text)

    await asyncio.to_thread(postgres_replica.pause_replay, setup.cfg)
    try:
        second = await _seal_one(setup, "while the replica is paused")
        # The strict service reads the replica, which has not replayed the seal yet.
        assert (await _receipt(setup, setup.strict, second)).status_code == 404
        # The bounded one turns to the primary once the replica is a second behind.
        resp = await _until(setup, setup.bounded, second, "primary")
        await _verifies(setup, second, resp.text)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{setup.bounded}/metrics")).text
        (lag,) = (
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("auditlog_query_replica_lag_seconds")
        )
        assert lag > 1
        assert (await _receipt(setup, setup.strict, second)).status_code == 404
    finally:
        await asyncio.to_thread(postgres_replica.pause_replay, setup.cfg, paused=False)
    resp = await _until(setup, setup.strict, second, "replica")
    await _verifies(setup, second, resp.text)
    await _until(setup, setup.bounded, second, "replica")
