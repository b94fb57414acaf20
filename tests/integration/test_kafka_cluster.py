"""Broker-loss drills on a three-broker Kafka cluster (`auditlog stack start --brokers 3`).

The module starts its own cluster (free ports, a temporary home; the shared stack is never
touched), a topic of 3 partitions with replication factor 3 and ``min.insync.replicas=2``, and
`auditlog ingest` and `auditlog sealer` on it, with the shared PostgreSQL. Traffic: 4 clients
posting ``/v2/log`` batches of 10 events, about 200 events a second, each event unique, every
200 answer's hashes remembered.

1. A partition leader is killed with SIGKILL under load: ingest goes on answering 200 once the
   controller has moved leadership, sealing continues, and every acknowledged event is sealed.
2. Two brokers killed: no write can reach two replicas, so ingest answers 503 to every request
   sent after the kill (nothing acknowledged); both come back, ingest answers 200 again, and
   every acknowledged event is sealed.

Each drill prints its measured recovery times; docs/local-stack.md quotes a run.
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from auditlog.cli.keys import write_signing_key
from auditlog.devstack import kafka, stack
from auditlog.devstack.config import StackConfig
from auditlog.kafka.clients import ensure_topics, make_admin
from tests.conftest import Services, record_drill, start_service, stop_processes
from tests.e2e.conftest import make_token
from tests.integration.own_stack import free_port, separate_kafka

pytestmark = pytest.mark.integration

WORKERS, PER_REQUEST, PACE = 4, 10, 0.2  # 4 x 10 events every 0.2 s: 200 events/s
SEND_TIMEOUT = 3.0  # ingest's wait for Kafka's acknowledgement before it answers 503
SEAL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Cluster:
    cfg: StackConfig
    services: Services
    ingest: str
    token: str


@pytest.fixture(scope="module")
def cluster(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    topic = f"audit.cluster-{secrets.token_hex(3)}"
    with separate_kafka(work / "home", brokers=3) as cfg:
        asyncio.run(ensure_topics(cfg.kafka_bootstrap, topic, partitions=3))
        key = work / "log.skey"
        write_signing_key(key, "cluster.auditlog.test")
        port, metrics = free_port(), free_port()
        env = {
            **os.environ,
            "AUDITLOG_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap,
            "AUDITLOG_DATABASE_URL": services.database_url,
            "AUDITLOG_TOPIC": topic,
            "AUDITLOG_ORIGIN": "cluster.auditlog.test",
            "AUDITLOG_SIGNING_KEY_FILE": str(key),
            "AUDITLOG_PORT": str(port),
            "AUDITLOG_INGEST_WORKERS": "1",
            "AUDITLOG_INGEST_SEND_TIMEOUT": str(SEND_TIMEOUT),
            "AUDITLOG_SEALER_GROUP_ID": f"sealer-{topic}",
            "AUDITLOG_SEALER_METRICS_PORT": str(metrics),
            "AUDITLOG_BATCH_MAX_AGE": "0.05",
            "AUDITLOG_BATCH_MIN_INTERVAL": "0",  # tests wait on each seal: no spacing
        }
        base = f"http://127.0.0.1:{port}"
        procs = [
            start_service("ingest", env, work / "ingest.log", f"{base}/readyz"),
            start_service(
                "sealer", env, work / "sealer.log", f"http://127.0.0.1:{metrics}/healthz"
            ),
        ]
        try:
            own = Services(cfg.kafka_bootstrap, services.database_url, topic)
            yield Cluster(cfg, own, base, make_token(services, {"log"}))
        finally:
            stop_processes(procs)


@dataclass
class Traffic:
    """Open-ended load on ingest; `answers` holds (time sent, status or error name)."""

    cluster: Cluster
    acked: dict[str, float] = field(default_factory=dict)  # hash -> when its 200 came
    answers: list[tuple[float, float, str]] = field(default_factory=list)  # sent, answered, what
    running: bool = True
    _next: int = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT + 7) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(WORKERS)))

    async def _worker(self, client: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {self.cluster.token}"}
        while self.running:
            sent = time.monotonic()
            first, self._next = self._next, self._next + PER_REQUEST
            events = [{"event": {"message": f"drill {n}"}} for n in range(first, self._next)]
            try:
                resp = await client.post(
                    f"{self.cluster.ingest}/v2/log", json={"events": events}, headers=headers
                )
                what = str(resp.status_code)
                if resp.status_code == 200:
                    for result in resp.json()["result"]["results"]:
                        self.acked[result["hash"]] = time.monotonic()
                else:
                    assert resp.status_code == 503, resp.text
            except httpx.HTTPError as exc:
                what = type(exc).__name__
            self.answers.append((sent, time.monotonic(), what))
            await asyncio.sleep(max(0.0, PACE - (time.monotonic() - sent)))

    async def acknowledged_after(self, moment: float, within: float = 30) -> None:
        """Wait until a request sent after ``moment`` is answered 200."""
        deadline = time.monotonic() + within
        while not any(what == "200" and sent > moment for sent, _, what in self.answers):
            assert time.monotonic() < deadline, f"nothing sent after {moment} acknowledged"
            await asyncio.sleep(0.1)

    def first_ok_sent_after(self, moment: float) -> float:
        """When the first request sent after ``moment`` that got 200 was answered."""
        return min(
            answered for sent, answered, what in self.answers if sent > moment and what == "200"
        )

    def counts(self, start: float, end: float) -> collections.Counter[str]:
        return collections.Counter(what for sent, _, what in self.answers if start < sent < end)


async def _describe(cluster: Cluster) -> dict[str, Any]:
    """The events topic as the cluster describes it now (leaders, in-sync replicas)."""
    admin = make_admin(cluster.cfg.kafka_bootstrap)
    await admin.start()
    try:
        (topic,) = await admin.describe_topics([cluster.services.topic])
    finally:
        await admin.close()
    return topic  # type: ignore[no-any-return]


async def _leaders(cluster: Cluster) -> dict[int, int]:
    """Partition -> the node that leads it."""
    topic = await _describe(cluster)
    return {p["partition"]: p["leader"] for p in topic["partitions"]}


async def _fully_replicated(cluster: Cluster) -> None:
    """Wait until every partition's in-sync replicas are all three (a restarted broker caught
    up), so that the next drill starts from a whole cluster."""
    deadline = time.monotonic() + 60
    while True:
        topic = await _describe(cluster)
        if all(len(p["isr"]) == 3 for p in topic["partitions"]):
            return
        assert time.monotonic() < deadline, f"replicas never caught up: {topic}"
        await asyncio.sleep(0.5)


async def _unsealed(cluster: Cluster, hashes: list[str]) -> int:
    """How many of ``hashes`` are still not sealed after waiting up to SEAL_TIMEOUT."""
    wanted = [bytes.fromhex(h) for h in hashes]
    conn = await asyncpg.connect(cluster.services.database_url)
    try:
        deadline = time.monotonic() + SEAL_TIMEOUT
        while True:
            sealed = await conn.fetchval(
                "SELECT count(DISTINCT event_hash) FROM events WHERE event_hash = ANY($1::bytea[])",
                wanted,
            )
            if sealed == len(wanted) or time.monotonic() > deadline:
                return len(wanted) - int(sealed)
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def _kill(cfg: StackConfig, node: int) -> None:
    pid = kafka.running_pid(cfg, node)
    assert pid is not None, f"kafka-{node} is not running"
    os.kill(pid, signal.SIGKILL)


async def test_a_killed_partition_leader_loses_no_acknowledged_event(cluster: Cluster) -> None:
    await _fully_replicated(cluster)
    traffic = Traffic(cluster)
    load = asyncio.create_task(traffic.run())
    await traffic.acknowledged_after(time.monotonic())
    victim = (await _leaders(cluster))[0]
    killed = time.monotonic()
    _kill(cluster.cfg, victim)
    # Past the 4-s fencing, then a second of acknowledged writes after leadership moved.
    await traffic.acknowledged_after(killed, within=60)
    await asyncio.sleep(1)
    traffic.running = False
    await load
    try:
        recovered = traffic.first_ok_sent_after(killed) - killed
        after = [h for h, at in traffic.acked.items() if at > killed + recovered]
        answers = dict(traffic.counts(killed, float("inf")))
        print(
            f"leader kafka-{victim} killed: first 200 after {recovered:.2f}s; answers after the "
            f"kill {answers}; {len(traffic.acked)} acknowledged"
        )
        record_drill(
            "leader_killed",
            first_200_after_kill_s=round(recovered, 2),
            answers_after_kill=answers,
            acknowledged=len(traffic.acked),
        )
        assert after, "nothing was acknowledged after the kill"
        assert await _unsealed(cluster, list(traffic.acked)) == 0
    finally:
        await asyncio.to_thread(stack.start_kafka, cluster.cfg, print)


async def test_two_brokers_down_answers_503_then_recovers(cluster: Cluster) -> None:
    await _fully_replicated(cluster)
    traffic = Traffic(cluster)
    load = asyncio.create_task(traffic.run())
    await traffic.acknowledged_after(time.monotonic())
    for node in (2, 3):
        _kill(cluster.cfg, node)
    killed = time.monotonic()
    # Down for twice ingest's send timeout: requests sent well inside the outage time out (503).
    await asyncio.sleep(2 * SEND_TIMEOUT)
    restarting = time.monotonic()
    await asyncio.to_thread(stack.start_kafka, cluster.cfg, print)
    answering = time.monotonic()
    await traffic.acknowledged_after(answering, within=60)
    await asyncio.sleep(1)
    traffic.running = False
    await load
    outage = traffic.counts(killed, restarting)
    recovered = traffic.first_ok_sent_after(restarting)
    print(
        f"two brokers down for {restarting - killed:.1f}s: answers {dict(outage)}; after the "
        f"restart began, ingest's first 200 at {recovered - restarting:.1f}s, both brokers "
        f"answering at {answering - restarting:.1f}s; {len(traffic.acked)} acknowledged"
    )
    record_drill(
        "two_brokers_down",
        down_s=round(restarting - killed, 1),
        answers_while_down=dict(outage),
        first_200_after_restart_began_s=round(recovered - restarting, 1),
        brokers_answering_after_s=round(answering - restarting, 1),
        acknowledged=len(traffic.acked),
    )
    # Nothing sent while two brokers were down was acknowledged.
    assert outage["200"] == 0 and outage["503"] > 0, outage
    # (A 200 within a second of the kill answers a batch replicated before it.)
    assert not any(killed + 1 < at < restarting for at in traffic.acked.values())
    assert await _unsealed(cluster, list(traffic.acked)) == 0
