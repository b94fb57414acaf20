"""The pipeline over Kafka's SASL_SSL, each service as its own least-privileged principal.

A broker of this module's own (free ports, its own CA and SCRAM users, Kafka's authorizer on)
opens a SASL_SSL listener; the topics are created over it by ``auditlog-setup``, ingest runs
as ``auditlog-ingest`` (SCRAM-SHA-256), the sealer as ``auditlog-sealer`` (SCRAM-SHA-512 with a
client certificate), the producer library as ``auditlog-ingest`` with PLAIN, each granted only
the ACLs docs/kafka-security.md lists (`auditlog.kafka.acls`). Events logged over HTTP and
through the library are sealed and their receipts verify; a wrong password, an untrusted CA, a
plaintext client and a principal reaching beyond its ACLs are all refused. PostgreSQL is the
shared one (the session's database).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from auditlog.cli.keys import write_signing_key
from auditlog.devstack import kafka_sasl
from auditlog.devstack.config import StackConfig
from auditlog.devstack.kafka_acls import grant
from auditlog.kafka.acls import producer_acls, sealer_acls, setup_acls
from auditlog.kafka.clients import ensure_topics, make_consumer, make_producer
from auditlog.kafka.security import KafkaSecurity
from auditlog.producer import AuditProducer
from auditlog.runtime.settings import Env, Secret
from tests.conftest import Services
from tests.e2e.conftest import Pipeline, make_token, start_pipeline, stop_processes
from tests.e2e.test_walking_skeleton import (
    ORIGIN,
    check_published_checkpoint_covers,
    verify_cli,
    wait_receipt,
)
from tests.integration.own_stack import free_port, separate_kafka

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Secured:
    cfg: StackConfig
    pipeline: Pipeline
    group: str


def _security(cfg: StackConfig, user: str, mechanism: str, **extra: str) -> KafkaSecurity:
    env = {**kafka_sasl.client_environment(cfg, user, mechanism), **extra}
    return KafkaSecurity.from_env(Env(env))


@pytest.fixture(scope="module")
def secured(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    work = tmp_path_factory.mktemp("sasl-ssl")
    topic, group = f"audit.sasl-{secrets.token_hex(3)}", "sealer-sasl"
    with separate_kafka(work / "home", sasl_ssl=True) as cfg:
        port = cfg.kafka_port
        grant(port, kafka_sasl.SETUP_USER, setup_acls(topic))
        grant(port, kafka_sasl.INGEST_USER, producer_acls(topic))
        grant(port, kafka_sasl.SEALER_USER, sealer_acls(topic, group))
        setup = _security(cfg, kafka_sasl.SETUP_USER, "SCRAM-SHA-256")
        assert cfg.kafka_sasl_ssl_bootstrap is not None
        asyncio.run(ensure_topics(cfg.kafka_sasl_ssl_bootstrap, topic, 2, security=setup))

        key = work / "log.skey"
        vkey = write_signing_key(key, ORIGIN)
        files = kafka_sasl.certificates(cfg)
        base = {
            **os.environ,
            "AUDITLOG_DATABASE_URL": services.database_url,
            "AUDITLOG_TOPIC": topic,
            "AUDITLOG_ORIGIN": ORIGIN,
            "AUDITLOG_SIGNING_KEY_FILE": str(key),
            "AUDITLOG_PORT": str(free_port()),
            "AUDITLOG_SEALER_GROUP_ID": group,
            "AUDITLOG_BATCH_MAX_AGE": "0.05",
            "AUDITLOG_BATCH_MIN_INTERVAL": "0",  # tests wait on each seal: no spacing
        }
        # `serve` runs ingest (and query, which needs no Kafka): it is the ingest principal.
        serve_env = {
            **base,
            **kafka_sasl.client_environment(cfg, kafka_sasl.INGEST_USER, "SCRAM-SHA-256"),
        }
        sealer_env = {
            **base,
            **kafka_sasl.client_environment(cfg, kafka_sasl.SEALER_USER, "SCRAM-SHA-512"),
            "AUDITLOG_KAFKA_SSL_CERTFILE": str(files.client_cert),
            "AUDITLOG_KAFKA_SSL_KEYFILE": str(files.client_key),
        }
        procs, url = start_pipeline(work, serve_env, {"sealer": sealer_env})
        try:
            token = make_token(services, {"log", "search"})
            kafka_services = Services(cfg.kafka_sasl_ssl_bootstrap, services.database_url, topic)
            pipeline = Pipeline(
                url, token, vkey, key.with_suffix(".vkey"), serve_env, kafka_services, work
            )
            yield Secured(cfg, pipeline, group)
        finally:
            stop_processes(procs)


def test_events_logged_over_http_are_sealed_through_sasl_ssl(
    secured: Secured, tmp_path: Path
) -> None:
    pipeline = secured.pipeline
    event = {"message": "over SASL_SSL", "actor": "ingest", "action": "tls"}
    response = httpx.post(
        f"{pipeline.base_url}/v1/log",
        json={"event": event, "verbose": True},
        headers={"Authorization": f"Bearer {pipeline.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    receipt = wait_receipt(pipeline, result["hash"])
    (tmp_path / "event.tlog-proof").write_text(receipt)
    (tmp_path / "envelope.json").write_text(json.dumps(result["envelope"]))
    ok = verify_cli(tmp_path / "event.tlog-proof", tmp_path / "envelope.json", pipeline.vkey_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    check_published_checkpoint_covers(pipeline, receipt, result["envelope"])


async def test_the_producer_library_publishes_with_plain(secured: Secured) -> None:
    pipeline, cfg = secured.pipeline, secured.cfg
    security = _security(cfg, kafka_sasl.INGEST_USER, "PLAIN")
    async with AuditProducer(
        pipeline.services.kafka_bootstrap, pipeline.services.topic, security=security
    ) as producer:
        event_hash = await producer.log({"message": "from the library", "actor": "plain"})
    await asyncio.to_thread(wait_receipt, pipeline, event_hash)


async def test_a_wrong_password_is_refused(secured: Secured) -> None:
    cfg = secured.cfg
    env = kafka_sasl.client_environment(cfg, kafka_sasl.INGEST_USER, "SCRAM-SHA-512")
    wrong = KafkaSecurity.from_env(Env({**env, "AUDITLOG_KAFKA_SASL_PASSWORD": "not-it"}))
    assert wrong.sasl_password != Secret(kafka_sasl.password(cfg, kafka_sasl.INGEST_USER))
    producer = make_producer(env["AUDITLOG_KAFKA_BOOTSTRAP"], wrong, request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


async def test_an_untrusted_broker_and_a_plaintext_client_are_refused(secured: Secured) -> None:
    cfg = secured.cfg
    env = kafka_sasl.client_environment(cfg, kafka_sasl.INGEST_USER, "SCRAM-SHA-512")
    # The system's CAs do not know the stack's private CA: the broker's certificate fails.
    system_only = KafkaSecurity.from_env(Env({**env, "AUDITLOG_KAFKA_SSL_CAFILE": ""}))
    plaintext = KafkaSecurity()
    for security in (system_only, plaintext):
        producer = make_producer(env["AUDITLOG_KAFKA_BOOTSTRAP"], security, request_timeout_ms=5000)
        with pytest.raises(KafkaConnectionError):
            await producer.start()
        await producer.stop()


async def test_each_principal_is_held_to_its_acls(secured: Secured) -> None:
    cfg, topic = secured.cfg, secured.pipeline.services.topic
    bootstrap = secured.pipeline.services.kafka_bootstrap
    # Ingest may write events, not read them: it sees no tenant's events.
    ingest = _security(cfg, kafka_sasl.INGEST_USER, "SCRAM-SHA-256")
    joiner = make_consumer(bootstrap, ingest, group_id=secured.group)
    joiner.subscribe([topic])
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await joiner.start()
    finally:
        await joiner.stop()
    reader = make_consumer(bootstrap, ingest, auto_offset_reset="earliest")
    await reader.start()
    try:
        reader.assign([TopicPartition(topic, 0)])
        with pytest.raises(TopicAuthorizationFailedError):
            await reader.getmany(timeout_ms=5000)
    finally:
        await reader.stop()
    # The sealer may read events, not write them: it cannot choose a tenant or a received_at.
    sealer = _security(cfg, kafka_sasl.SEALER_USER, "SCRAM-SHA-512")
    writer = make_producer(bootstrap, sealer, enable_idempotence=False)
    await writer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await writer.send_and_wait(topic, b"{}")
    finally:
        await writer.stop()
