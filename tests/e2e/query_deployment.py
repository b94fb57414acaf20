"""A query deployment of its own for a test module: pipeline, topic, reference events.

Each module that uses it gets its own pipeline on a fresh one-partition topic whose log uses
``pangea-sha256``: the deployment shape in which Pangea's SDK verifies membership and consistency
proofs. The reference events of tests/unit/test_search_query.py are logged in one bulk request
and sealed before the module's first test; what a module logs after that stays its own.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from pangea.config import PangeaConfig
from pangea.services import Audit
from pangea.services.audit import util as pangea_util

from auditlog.core.hashing import PANGEA_SHA256
from auditlog.kafka.clients import dlq_topic, ensure_topics
from tests.conftest import Services, delete_topics
from tests.e2e.conftest import make_token, pipeline_env, start_pipeline, stop_processes
from tests.unit.test_search_query import REFERENCE_EVENTS

ORIGIN = "query.e2e.test"


@dataclass(frozen=True)
class Deployment:
    base_url: str
    token: str
    vkey_file: Path
    services: Services
    topic: str
    hashes: dict[str, str]  # reference event name -> event hash
    envelopes: dict[str, dict[str, object]]


def _wire_event(name: str) -> dict[str, object]:
    event = dict(REFERENCE_EVENTS[name])
    stamp = event.get("timestamp")
    if isinstance(stamp, datetime):
        event["timestamp"] = stamp.isoformat()
    return {k: v for k, v in event.items() if v is not None}


def _start(services: Services, work: Path, topic: str) -> tuple[list[subprocess.Popen[bytes]], str]:
    from auditlog.cli.keys import write_signing_key

    key = work / "log.skey"
    write_signing_key(key, ORIGIN)
    env = pipeline_env(
        services,
        topic,
        ORIGIN,
        key,
        AUDITLOG_HASH_SCHEME=PANGEA_SHA256,
        # test_query_reads.py drops and rebuilds the hash index: receipts must see it at once.
        AUDITLOG_QUERY_HASH_INDEX_TTL_SECONDS="0",
    )
    return start_pipeline(work, env)


def sealed_size(base: str, topic: str) -> int:
    logs = httpx.get(f"{base}/v1/logs").json()["result"]["logs"]
    return sum(entry["size"] for entry in logs if entry["topic"] == topic)


def deploy(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The body of a module's ``deployment`` fixture: yields it running, then stops it."""
    topic = f"audit.query-{secrets.token_hex(4)}"
    asyncio.run(ensure_topics(services.kafka_bootstrap, topic, partitions=1))
    work = tmp_path_factory.mktemp("query-pipeline")
    procs, base = _start(services, work, topic)
    try:
        token = make_token(services, {"log", "search"})
        audit = Audit(token, config=PangeaConfig(domain=base))
        names = sorted(REFERENCE_EVENTS)
        response = audit.log_bulk([_wire_event(n) for n in names], verbose=True)
        assert response.result is not None
        results = response.result.results
        hashes = {n: r.hash for n, r in zip(names, results, strict=True)}
        envelopes = {
            n: r.envelope.model_dump(exclude_none=True) for n, r in zip(names, results, strict=True)
        }
        deadline = time.monotonic() + 30
        while sealed_size(base, topic) < len(names):
            assert time.monotonic() < deadline, "reference events were not sealed"
            time.sleep(0.1)
        yield Deployment(base, token, work / "log.vkey", services, topic, hashes, envelopes)
    finally:
        stop_processes(procs)
        asyncio.run(delete_topics(services.kafka_bootstrap, [topic, dlq_topic(topic)]))


def sdk(d: Deployment, token: str | None = None) -> Audit:
    return Audit(token or d.token, config=PangeaConfig(domain=d.base_url))


def names_of(d: Deployment, events: list[object]) -> list[str]:
    by_hash = {h: n for n, h in d.hashes.items()}
    return [by_hash[e.hash] for e in events]  # type: ignore[attr-defined]


def post(d: Deployment, path: str, body: object, token: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{d.base_url}{path}",
        content=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token or d.token}"},
    )


def verify_json_download(d: Deployment, payload: dict[str, object]) -> list[str]:
    events = payload["events"]
    assert isinstance(events, list)
    root = payload.get("root")
    for item in events:
        canonical = json.dumps(
            item["envelope"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        assert pangea_util.hash_bytes(canonical).hex() == item["hash"]
        if root is not None:
            proof = pangea_util.decode_membership_proof(item["membership_proof"])
            assert pangea_util.verify_membership_proof(
                pangea_util.decode_hash(item["hash"]),
                pangea_util.decode_hash(root["root_hash"]),  # type: ignore[index]
                proof,
            )
    by_hash = {h: n for n, h in d.hashes.items()}
    return [by_hash[item["hash"]] for item in events]
