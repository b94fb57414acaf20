"""One audit event from the official Pangea SDK to a receipt verified offline."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pangea.config import PangeaConfig
from pangea.exceptions import UnauthorizedException, ValidationException
from pangea.services import Audit

from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e

SEED = {
    "message": "Security updated",
    "action": "Off",
    "actor": "dennis.nedry@ingen.com",
    "target": "Visitor center",
}


def _audit(pipeline: Pipeline, token: str | None = None) -> Audit:
    return Audit(token or pipeline.token, config=PangeaConfig(domain=pipeline.base_url))


def wait_receipt(pipeline: Pipeline, event_hash: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {pipeline.token}"}
    while True:
        resp = httpx.get(f"{pipeline.base_url}/v1/receipts/{event_hash}", headers=headers)
        if resp.status_code == 200:
            return resp.text
        assert resp.status_code == 404, resp.text
        if time.monotonic() > deadline:
            pytest.fail(f"event {event_hash} was not sealed within {timeout}s")
        time.sleep(0.1)


def verify_cli(receipt: Path, envelope: Path, vkey: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "auditlog.cli",
            "verify",
            "receipt",
            str(receipt),
            "--entry",
            str(envelope),
            "--key",
            str(vkey),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_seed_event_is_sealed_and_its_receipt_verifies(pipeline: Pipeline, tmp_path: Path) -> None:
    response = _audit(pipeline).log(**SEED, verbose=True)
    result = response.result
    assert result is not None
    assert len(result.hash) == 64
    envelope = result.envelope.model_dump(exclude_none=True)
    assert envelope["event"] == SEED

    receipt = wait_receipt(pipeline, result.hash)
    assert receipt.startswith("c2sp.org/tlog-proof@v1\n")
    receipt_file = tmp_path / "event.tlog-proof"
    receipt_file.write_text(receipt)
    envelope_file = tmp_path / "envelope.json"
    envelope_file.write_text(json.dumps(envelope))

    ok = verify_cli(receipt_file, envelope_file, pipeline.vkey_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert result.hash in ok.stdout

    # The checkpoint the receipt carries is the log's published one.
    log_id = f"{pipeline.services.topic}-"
    logs = httpx.get(f"{pipeline.base_url}/v1/logs").json()["result"]["logs"]
    assert any(entry["log"].startswith(log_id) and entry["size"] >= 1 for entry in logs)


def test_a_receipt_with_one_flipped_byte_fails(pipeline: Pipeline, tmp_path: Path) -> None:
    response = _audit(pipeline).log(message="flip me", actor="mallory", verbose=True)
    assert response.result is not None
    envelope = response.result.envelope.model_dump(exclude_none=True)
    receipt = wait_receipt(pipeline, response.result.hash).encode()
    envelope_file = tmp_path / "envelope.json"
    envelope_file.write_text(json.dumps(envelope))
    failures = 0
    positions = sorted({len("c2sp.org/tlog-proof@v1\n") + 10, len(receipt) // 2, len(receipt) - 40})
    for pos in positions:
        mutated = bytearray(receipt)
        mutated[pos] ^= 0x01
        path = tmp_path / f"mutated-{pos}.tlog-proof"
        path.write_bytes(bytes(mutated))
        result = verify_cli(path, envelope_file, pipeline.vkey_file)
        assert result.returncode in (1, 2), result.stdout
        failures += 1
    assert failures == len(positions)

    tampered = dict(envelope, event={**envelope["event"], "actor": "alice"})
    envelope_file.write_text(json.dumps(tampered))
    good = tmp_path / "good.tlog-proof"
    good.write_bytes(receipt)
    result = verify_cli(good, envelope_file, pipeline.vkey_file)
    assert result.returncode == 1, result.stdout


async def _end_offsets(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer.topics()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()


def test_bad_token_and_bad_event_never_reach_kafka(pipeline: Pipeline) -> None:
    before = asyncio.run(_end_offsets(pipeline.services.kafka_bootstrap, pipeline.services.topic))

    with pytest.raises(UnauthorizedException) as unauthorized:
        _audit(pipeline, token="alt_nobody_wrong").log(message="nope")
    assert unauthorized.value.response.status == "Unauthorized"

    with pytest.raises(ValidationException) as invalid:
        _audit(pipeline).log_event({"actor": "no message here"})
    errors = invalid.value.errors
    assert [e.source for e in errors] == ["/event/message"]
    assert errors[0].code == "FieldRequired"

    raw = httpx.post(
        f"{pipeline.base_url}/v1/log",
        content=b"{not json",
        headers={"Authorization": f"Bearer {pipeline.token}"},
    )
    assert raw.status_code == 400
    assert raw.json()["status"] == "ValidationError"
    assert raw.json()["result"]["errors"]

    after = asyncio.run(_end_offsets(pipeline.services.kafka_bootstrap, pipeline.services.topic))
    assert after == before
