"""`auditlog witness` end to end: the tlog-witness protocol, atomic state, cosigned receipts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.cosignature import CosignatureVerifier, verified_cosigners
from auditlog.core.entry import leaf_hash
from auditlog.core.envelope import Envelope
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.policy import parse_policy
from auditlog.core.proof import consistency_proof, inclusion_proof
from auditlog.core.receipt import Receipt
from auditlog.core.tiles import TileID
from auditlog.verify.witness_client import (
    Witness,
    WitnessConflict,
    WitnessError,
    add_checkpoint,
    cosign_checkpoint,
)
from tests.e2e.conftest import _free_port

pytestmark = pytest.mark.integration

HASHER = get_hasher("rfc6962-sha256")
ORIGIN = "witnessed.auditlog.test/audit.events/0"
LOG = NoteSigner.generate("witnessed.auditlog.test")
ENVELOPES = [
    Envelope(event={"message": f"m{i}", "actor": "a"}, received_at="2025-01-01T00:00:00.000000Z")
    for i in range(600)
]
LEAVES = [leaf_hash(HASHER, e.canonical) for e in ENVELOPES]


def tiles(size: int) -> dict[TileID, bytes]:
    return integrate(HASHER, 0, {}, LEAVES[:size]).tiles


def note(size: int, signer: NoteSigner = LOG, origin: str = ORIGIN) -> str:
    root = integrate(HASHER, 0, {}, LEAVES[:size]).root
    return sign_note(Checkpoint(origin, size, root).to_text(), [signer])


async def proofs(old: int, new: int) -> Sequence[bytes]:
    return consistency_proof(HASHER, old, new, tiles(new))


@dataclass(frozen=True)
class RunningWitness:
    url: str
    vkey: str
    proc: subprocess.Popen[bytes]


def start_witness(tmp: Path, name: str) -> RunningWitness:
    key = tmp / f"{name}.skey"
    key.write_text(NoteSigner.generate(name).skey() + "\n")
    vkey = subprocess.run(
        [sys.executable, "-m", "auditlog.cli", "witness", "--key", str(key), "--print-vkey"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    port = _free_port()
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", "witness", "--listen", f"127.0.0.1:{port}",
             "--key", str(key), "--state", str(tmp / f"{name}.sqlite3"),
             "--log", f"{ORIGIN}={LOG.vkey()}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return RunningWitness(url, vkey, proc)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("witness did not start:\n" + log.read_text())
        time.sleep(0.1)


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[list[RunningWitness]]:
    running = [start_witness(tmp_path, f"w{i}.witness.test") for i in range(2)]
    try:
        yield running
    finally:
        for w in running:
            w.proc.terminate()
        for w in running:
            w.proc.wait(20)


def post(url: str, body: str) -> httpx.Response:
    return httpx.post(f"{url}/add-checkpoint", content=body.encode(), timeout=5)


def test_add_checkpoint_protocol(witnesses: list[RunningWitness]) -> None:
    w = witnesses[0]
    verifier = CosignatureVerifier.from_vkey(w.vkey)
    lines = asyncio.run(add_checkpoint(w.url, 0, [], note(100)))
    assert verified_cosigners(note(100) + "".join(x + "\n" for x in lines), {"w": verifier})

    first = asyncio.run(proofs(100, 300))
    lines = asyncio.run(add_checkpoint(w.url, 100, first, note(300)))
    assert verified_cosigners(note(300) + lines[0] + "\n", {"w": verifier})

    # 409: the witness moved on to 300, with the size in text/x.tlog.size.
    stale = post(w.url, f"old 100\n\n{note(300)}")
    assert stale.status_code == 409
    assert stale.headers["content-type"].startswith("text/x.tlog.size")
    assert stale.text == "300\n"
    with pytest.raises(WitnessConflict) as conflict:
        asyncio.run(add_checkpoint(w.url, 100, first, note(300)))
    assert conflict.value.size == 300
    # 422: a proof for other sizes.
    wrong = asyncio.run(proofs(299, 500))
    with pytest.raises(WitnessError) as bad_proof:
        asyncio.run(add_checkpoint(w.url, 300, wrong, note(500)))
    assert bad_proof.value.status == 422
    # 403: not signed by the log's key; 404: a log the witness does not know.
    with pytest.raises(WitnessError) as forged:
        asyncio.run(add_checkpoint(w.url, 300, [], note(300, NoteSigner.generate("x"))))
    assert forged.value.status == 403
    assert post(w.url, f"old 0\n\n{note(5, origin='elsewhere/0')}").status_code == 404
    assert post(w.url, "old 1\n").status_code == 400
    # A fork at the same size: 409, and the witness does not move.
    fork = sign_note(Checkpoint(ORIGIN, 300, bytes(32)).to_text(), [LOG])
    assert post(w.url, f"old 300\n\n{fork}").status_code == 409
    assert asyncio.run(add_checkpoint(w.url, 300, asyncio.run(proofs(300, 600)), note(600)))


def test_concurrent_requests_cannot_roll_the_witness_back(witnesses: list[RunningWitness]) -> None:
    w = witnesses[0]
    asyncio.run(add_checkpoint(w.url, 0, [], note(100)))

    async def race() -> list[int | str]:
        async def one(size: int) -> int | str:
            try:
                await add_checkpoint(w.url, 100, await proofs(100, size), note(size), seconds=5)
            except WitnessConflict as exc:
                return f"409 at {exc.size}"
            return size

        return list(await asyncio.gather(*(one(s) for s in range(200, 600, 40))))

    results = asyncio.run(race())
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(r == f"409 at {winners[0]}" for r in results if not isinstance(r, int))


def receipt_for(index: int, cosigned: str) -> str:
    size = Checkpoint.from_text(cosigned.split("\n\n", maxsplit=1)[0] + "\n").size
    proof = inclusion_proof(HASHER, index, size, tiles(size))
    return Receipt(index, tuple(proof), cosigned).to_text()


def verify_receipt_cli(tmp: Path, receipt: str, policy: str) -> subprocess.CompletedProcess[str]:
    (tmp / "r.tlog-proof").write_text(receipt)
    (tmp / "policy").write_text(policy)
    (tmp / "envelope.json").write_text(json.dumps(ENVELOPES[7].to_dict()))
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", "verify", "receipt", str(tmp / "r.tlog-proof"),
         "--entry", str(tmp / "envelope.json"), "--policy", str(tmp / "policy")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_receipts_carry_cosignatures_and_verify_against_a_policy(
    witnesses: list[RunningWitness], tmp_path: Path
) -> None:
    both = "".join(f"witness W{i} {w.vkey}\n" for i, w in enumerate(witnesses))
    policy_text = f"log {LOG.vkey()}\n{both}group all-of-them all W0 W1\nquorum all-of-them\n"
    policy = parse_policy(policy_text)
    ws = [Witness(f"W{i}", w.url) for i, w in enumerate(witnesses)]
    asyncio.run(add_checkpoint(witnesses[1].url, 0, [], note(50)))  # W1 is ahead: learnt by 409

    cosigned = asyncio.run(cosign_checkpoint(note(200), 200, ws, policy, proofs))
    assert cosigned is not None
    assert [w.size for w in ws] == [200, 200]
    ok = verify_receipt_cli(tmp_path, receipt_for(7, cosigned), policy_text)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "witness quorum met (W0, W1)" in ok.stdout

    # Only the log's signature: the policy fails closed.
    bare = verify_receipt_cli(tmp_path, receipt_for(7, note(200)), policy_text)
    assert bare.returncode == 1 and "QuorumNotMet" in bare.stdout
    # A witness that is down: the quorum of two is not met, so nothing is published.
    witnesses[1].proc.terminate()
    witnesses[1].proc.wait(20)
    assert asyncio.run(cosign_checkpoint(note(300), 300, ws, policy, proofs, seconds=1)) is None
    one = policy_text.replace("all W0 W1", "any W0 W1")
    partial = asyncio.run(cosign_checkpoint(note(300), 300, ws, parse_policy(one), proofs))
    assert partial is not None
    assert verify_receipt_cli(tmp_path, receipt_for(7, partial), one).returncode == 0
    assert verify_receipt_cli(tmp_path, receipt_for(7, partial), policy_text).returncode == 1
