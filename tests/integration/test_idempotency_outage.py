"""The broker-kill drill of issue 21: retries under a Kafka outage are sealed exactly once.

A bounded run of ``/v2/log`` traffic (about 2,000 events a second, untenanted, each event with
its own ``idempotency_key``), whose client retries every 503 (and every failed connection) with
the same body, so the same keys, until it gets 200. Two seconds in, the Kafka broker is killed
with SIGKILL and started again 5 seconds later (over twice ingest's 2-s send timeout, so
requests time out and are retried); traffic goes on until 2 s after it answers again. Every
attempt that timed out is still delivered once the broker is back, as are the retries: several
copies of one event reach the topic.

Asserted: every copy of a key is on one partition (the record key is the key's namespace), every
acknowledged key is sealed, each key exactly once, and nothing was sealed that was not sent; the
sealer met no deadlock. It runs on a stack of its own (``outage_stack`` in
tests/integration/conftest.py, shared with the sealer outage drills, each on topics of its own):
the stack other tests share on the default ports is never touched.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from auditlog.cli.keys import write_signing_key
from auditlog.devstack import stack
from auditlog.devstack.config import StackConfig
from tests.conftest import Services
from tests.integration.sealer_harness import SealerFleet

pytestmark = pytest.mark.integration

TOPIC = "audit.idem-outage"
# Traffic from the start until AFTER_BACK seconds after the broker answers again (about 20 s:
# a broker killed mid-write takes ~10 s to start again), then only the retries, for up to
# GIVE_UP seconds.
KILL_AT, DOWN_FOR, AFTER_BACK, GIVE_UP = 2.0, 5.0, 2.0, 30.0
RATE = 2000  # events a second, all workers together
WORKERS, PER_REQUEST = 8, 25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _ingest(cfg: StackConfig, workdir: Path) -> Iterator[tuple[str, str, str]]:
    """An ingest process on the stack; yields its base URL, a log token and its token id."""
    from auditlog.kafka.clients import ensure_topics
    from auditlog.pg import db
    from auditlog.pg.tokens import create_token

    async def prepare() -> tuple[str, str]:
        conn = await asyncpg.connect(cfg.database_url)
        try:
            await db.migrate(conn)
            token, info = await create_token(conn, "outage-drill", {"log"})
            token_id = info.token_id
        finally:
            await conn.close()
        await ensure_topics(cfg.kafka_bootstrap, TOPIC, partitions=4)
        return token, token_id

    token, token_id = asyncio.run(prepare())
    port = _free_port()
    env = {
        **os.environ,
        "AUDITLOG_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap,
        "AUDITLOG_DATABASE_URL": cfg.database_url,
        "AUDITLOG_TOPIC": TOPIC,
        "AUDITLOG_PORT": str(port),
        "AUDITLOG_INGEST_SEND_TIMEOUT": "2",
    }
    with (workdir / "ingest.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", "ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "ingest never got ready"
            time.sleep(0.2)
        yield base, token, token_id
    finally:
        proc.terminate()
        proc.wait(20)


@dataclass
class _Traffic:
    base: str
    token: str
    acked: dict[str, str] = field(default_factory=dict)  # key -> the hash its 200 answered
    sent: set[str] = field(default_factory=set)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    next_key: int = 0

    stop_at: float = float("inf")  # set once the broker is back

    async def worker(self, client: httpx.AsyncClient) -> None:
        interval = WORKERS * PER_REQUEST / RATE
        loop = asyncio.get_running_loop()
        while loop.time() < self.stop_at:
            began = loop.time()
            keys = [f"ev-{self.next_key + i}" for i in range(PER_REQUEST)]
            self.next_key += PER_REQUEST
            self.sent.update(keys)
            body = {
                "events": [{"event": {"message": f"drill {k}"}, "idempotency_key": k} for k in keys]
            }
            # Retry the same body (the same keys) until it is acknowledged.
            while True:
                try:
                    resp = await client.post(
                        f"{self.base}/v2/log",
                        json=body,
                        headers={"Authorization": f"Bearer {self.token}"},
                        timeout=10,
                    )
                    self.answers[str(resp.status_code)] += 1
                    if resp.status_code == 200:
                        results = resp.json()["result"]["results"]
                        self.acked.update(zip(keys, (r["hash"] for r in results), strict=True))
                        break
                    assert resp.status_code == 503, resp.text
                except httpx.HTTPError as exc:
                    self.answers[type(exc).__name__] += 1
                if loop.time() > self.stop_at + GIVE_UP:
                    return
                await asyncio.sleep(0.25)
            await asyncio.sleep(max(0.0, interval - (loop.time() - began)))


async def _kill_and_restart(cfg: StackConfig, started: float, traffic: _Traffic) -> None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(max(0.0, started + KILL_AT - loop.time()))
        kafka = stack.status(cfg)[0]
        assert kafka.pid is not None
        os.kill(kafka.pid, signal.SIGKILL)
        print(f"kafka (pid {kafka.pid}) killed at {loop.time() - started:.1f}s")
        await asyncio.sleep(DOWN_FOR)
        await asyncio.to_thread(stack.start, cfg, print)
        print(f"kafka back at {loop.time() - started:.1f}s")
    finally:
        traffic.stop_at = loop.time() + AFTER_BACK  # whatever happened: the traffic ends


async def _partitions_of_keys(cfg: StackConfig) -> dict[str, set[int]]:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=cfg.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: dict[str, set[int]] = collections.defaultdict(set)
    try:
        while batch := await consumer.getmany(timeout_ms=3000, max_records=5000):
            for tp, records in batch.items():
                for r in records:
                    key = dict(r.headers).get("idempotency-key")
                    assert key is not None
                    found[key.decode()].add(tp.partition)
    finally:
        await consumer.stop()
    return found


def test_retries_through_a_broker_kill_are_sealed_exactly_once(
    outage_stack: StackConfig, tmp_path: Path
) -> None:
    key = tmp_path / "log.skey"
    write_signing_key(key, "drill.auditlog.test")
    services = Services(outage_stack.kafka_bootstrap, outage_stack.database_url, TOPIC)
    fleet = SealerFleet(services, TOPIC, key, tmp_path)
    with _ingest(outage_stack, tmp_path) as (base, token, token_id):
        fleet.start()
        try:
            traffic = _Traffic(base, token)

            async def run() -> None:
                started = asyncio.get_running_loop().time()
                async with httpx.AsyncClient() as client:
                    await asyncio.gather(
                        _kill_and_restart(outage_stack, started, traffic),
                        *(traffic.worker(client) for _ in range(WORKERS)),
                    )

            asyncio.run(run())
            print(f"sent {len(traffic.sent)} events, answers {dict(traffic.answers)}")
            assert set(traffic.acked) == traffic.sent, "a request was never acknowledged"
            assert traffic.answers["503"] > 0, "the outage never showed: nothing was retried"
            sealed = asyncio.run(_wait_sealed(outage_stack, len(traffic.sent)))
        finally:
            fleet.close()
    # Every key once, every acknowledged key, nothing that was not sent.
    assert not [k for k, n in sealed.items() if n > 1], "a key was sealed twice"
    assert set(sealed) == traffic.sent
    partitions = asyncio.run(_partitions_of_keys(outage_stack))
    copies = sum(len(p) for p in partitions.values())
    assert not [k for k, p in partitions.items() if len(p) > 1], "a key's copies on two partitions"
    duplicates = sum(e["duplicates"] for e in fleet.events("sealed"))
    print(f"{len(sealed)} keys sealed once each; {duplicates} retried copies skipped")
    assert duplicates > 0, "no retry reached the topic: the drill tested nothing"
    assert copies == len(partitions) == len(sealed)
    assert "Deadlock" not in fleet.logs()
    claims = asyncio.run(_claims(outage_stack, token_id))
    assert claims == len(sealed)


async def _wait_sealed(cfg: StackConfig, n: int, within: float = 60) -> dict[str, int]:
    """idempotency key -> how many events were sealed with it, once ``n`` keys are sealed."""
    deadline = time.monotonic() + within
    conn = await asyncpg.connect(cfg.database_url)
    try:
        while True:
            rows = await conn.fetch(
                "SELECT idempotency_key, count(*) AS n FROM events WHERE log_id LIKE $1"
                " GROUP BY idempotency_key",
                f"{TOPIC}-%",
            )
            if len(rows) >= n or time.monotonic() > deadline:
                await asyncio.sleep(2)  # copies still on their way would be sealed by now
                rows = await conn.fetch(
                    "SELECT idempotency_key, count(*) AS n FROM events WHERE log_id LIKE $1"
                    " GROUP BY idempotency_key",
                    f"{TOPIC}-%",
                )
                return {r["idempotency_key"]: r["n"] for r in rows}
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def _claims(cfg: StackConfig, token_id: str) -> int:
    conn = await asyncpg.connect(cfg.database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM idempotency_keys k"
                " JOIN events e ON e.log_id = k.log_id AND e.idx = k.idx"
                " WHERE k.principal = $1 AND k.tenant_id = '' AND e.idempotency_key = k.key",
                f"token:{token_id}",
            )
        )
    finally:
        await conn.close()
