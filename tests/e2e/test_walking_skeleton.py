"""One audit event from the official Pangea SDK to a receipt verified offline."""

from __future__ import annotations

import asyncio
import base64
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

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.envelope import Envelope
from auditlog.core.hashing import get_hasher
from auditlog.core.note import NoteVerifier, open_note
from auditlog.core.proof import verify_consistency
from auditlog.core.receipt import Receipt, verify_receipt
from tests.e2e.conftest import Pipeline

pytestmark = pytest.mark.e2e

ORIGIN = "e2e.auditlog.test"  # the pipeline fixture's AUDITLOG_ORIGIN

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

    check_published_checkpoint_covers(pipeline, receipt, envelope)


def check_published_checkpoint_covers(
    pipeline: Pipeline, receipt_text: str, envelope: dict[str, object]
) -> None:
    """The log publishes the receipt's checkpoint, signed by the log's key for the log's origin,
    and its latest published checkpoint provably extends it: both cover the event."""
    verifier = NoteVerifier.from_vkey(pipeline.vkey)
    receipt = Receipt.from_text(receipt_text)
    signed = Checkpoint.from_text(open_note(receipt.checkpoint, [verifier]).text)
    logs = httpx.get(f"{pipeline.base_url}/v1/logs").json()["result"]["logs"]
    [log] = [entry for entry in logs if entry["origin"] == signed.origin]
    assert log["topic"] == pipeline.services.topic
    assert signed.origin == f"{ORIGIN}/{pipeline.services.topic}/{log['partition']}"
    hasher = get_hasher(log["hash_scheme"])
    canonical = Envelope.from_obj(envelope).canonical
    verify_receipt(receipt, canonical, [verifier], hasher, origin=signed.origin)

    base = f"{pipeline.base_url}/v1/logs/{log['log']}"
    assert httpx.get(f"{base}/checkpoints/{signed.size}").text == receipt.checkpoint
    # Grow the log past the receipt's checkpoint (events go to either partition).
    deadline = time.monotonic() + 30
    while log["size"] <= signed.size:
        assert time.monotonic() < deadline, "the log did not grow"
        _audit(pipeline).log(message="after the receipt")
        time.sleep(0.2)
        [log] = [
            entry
            for entry in httpx.get(f"{pipeline.base_url}/v1/logs").json()["result"]["logs"]
            if entry["origin"] == signed.origin
        ]
    latest_text = httpx.get(f"{base}/checkpoint").text
    latest = Checkpoint.from_text(open_note(latest_text, [verifier]).text)
    assert latest.origin == signed.origin
    assert receipt.index < signed.size < latest.size
    consistency = httpx.get(
        f"{pipeline.base_url}/v1/proofs/consistency",
        params={"log": log["log"], "from": signed.size, "to": latest.size},
    )
    head, _, note = consistency.text.partition("\n\n")
    first, *hashes = head.split("\n")
    assert first == f"old {signed.size}"
    assert note == latest_text
    proof = [base64.b64decode(h, validate=True) for h in hashes]
    verify_consistency(hasher, signed.size, latest.size, signed.root, latest.root, proof)


def _flip_b64(text: str, byte: int = -1) -> str:
    """``text``, standard base64, with one bit of its decoded byte ``byte`` flipped."""
    data = bytearray(base64.b64decode(text, validate=True))
    data[byte] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


def receipt_mutations(receipt: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Name -> (the receipt with one part changed, what the verifier must say about it)."""
    head, _, note = receipt.partition("\n\n")
    header, index_line, *proof = head.split("\n")
    origin, size, root, blank, *lines = note.split("\n")
    # One signature line per key name the sealer signs under (the origin, and during a key-name
    # rotation the old name too); the first is the one changed.
    assert index_line.startswith("index ") and blank == "" and lines[-1] == "", receipt
    signature, *others = lines[:-1]
    dash, name, sig = signature.split(" ")

    def receipt_with(
        proof_lines: list[str] = proof,
        index: str = index_line,
        checkpoint: tuple[str, ...] = (origin, size, root),
        sig_line: str = signature,
    ) -> str:
        return (
            "\n".join([header, index, *proof_lines])
            + "\n\n"
            + "\n".join([*checkpoint, "", sig_line, *others, ""])
        )

    mutations: dict[str, tuple[str, tuple[str, ...]]] = {
        "header": (
            receipt.replace("tlog-proof@v1", "tlog-proog@v1", 1),
            ("ReceiptError", "must start with"),
        ),
        "index past the size": (
            receipt_with(index=f"index {size}"),
            ("MalformedProof", f"is not below tree size {size}"),
        ),
        "proof hash not base64": (
            receipt_with(proof_lines=[*proof[:-1], "*" + (proof[-1] if proof else "A" * 43)]),
            ("ReceiptError", "is not base64"),
        ),
        "checkpoint root": (
            receipt_with(checkpoint=(origin, size, _flip_b64(root))),
            ("SignatureError", "does not verify"),
        ),
        "checkpoint size": (
            receipt_with(checkpoint=(origin, str(int(size) + 1), root)),
            ("SignatureError", "does not verify"),
        ),
        "checkpoint origin": (
            receipt_with(checkpoint=(origin + "x", size, root)),
            ("SignatureError", "does not verify"),
        ),
        "signature": (
            receipt_with(sig_line=f"{dash} {name} {_flip_b64(sig)}"),
            ("SignatureError", "does not verify"),
        ),
    }
    if proof:
        changed = [_flip_b64(proof[0], 0), *proof[1:]]
        mutations["proof hash"] = (receipt_with(proof_lines=changed), ("RootMismatch",))
    else:
        extra = [base64.b64encode(bytes(32)).decode()]
        mutations["proof hash"] = (
            receipt_with(proof_lines=extra),
            ("MalformedProof", "wrong proof size"),
        )
    return mutations


def _failed_for(result: subprocess.CompletedProcess[str], reasons: tuple[str, ...]) -> bool:
    """Exit code 1, a FAILED line naming every one of ``reasons``, and no crash."""
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED: ")]
    return (
        result.returncode == 1
        and len(failed) == 1
        and all(reason in failed[0] for reason in reasons)
        and "Traceback" not in result.stderr
    )


def test_every_part_of_a_receipt_is_checked(pipeline: Pipeline, tmp_path: Path) -> None:
    response = _audit(pipeline).log(message="flip me", actor="mallory", verbose=True)
    assert response.result is not None
    envelope = response.result.envelope.model_dump(exclude_none=True)
    receipt = wait_receipt(pipeline, response.result.hash)
    envelope_file = tmp_path / "envelope.json"
    envelope_file.write_text(json.dumps(envelope))
    good = tmp_path / "good.tlog-proof"
    good.write_text(receipt)
    unmutated = verify_cli(good, envelope_file, pipeline.vkey_file)
    assert unmutated.returncode == 0, unmutated.stdout + unmutated.stderr
    assert f"OK: event {response.result.hash} " in unmutated.stdout

    wrong: dict[str, str] = {}
    for name, (mutated, reasons) in receipt_mutations(receipt).items():
        assert mutated != receipt, name
        path = tmp_path / f"{name.replace(' ', '-')}.tlog-proof"
        path.write_text(mutated)
        result = verify_cli(path, envelope_file, pipeline.vkey_file)
        if not _failed_for(result, reasons):
            wrong[name] = f"exit {result.returncode}: {result.stdout}{result.stderr[-500:]}"
    assert not wrong, f"mutations not refused for the expected reason: {wrong}"

    tampered = dict(envelope, event={**envelope["event"], "actor": "alice"})
    envelope_file.write_text(json.dumps(tampered))
    result = verify_cli(good, envelope_file, pipeline.vkey_file)
    assert _failed_for(result, ("RootMismatch",)), result.stdout + result.stderr


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
