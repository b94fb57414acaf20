"""A key-name rotation on a real log (docs/verification.md, the key-name rule).

A log sealed by a sealer from before the rule (every checkpoint signed under the deployment-wide
name only), then by the sealer of today during the overlap (both names), then after it (the
origin only): every stored checkpoint keeps verifying, and ``auditlog audit`` is clean with the
deployment's vkey, with the file of each log's vkey (``auditlog logs --format vkeys``), and with
the one log's own vkey; another log's vkey verifies none of them. And a witness configured the
usual way, from the witness network's log list that ``auditlog logs`` prints, cosigns a log
signing under its origin only.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditlog.cli.keys import write_signing_key
from auditlog.core.hashing import get_hasher
from auditlog.core.log_keys import log_vkey
from auditlog.core.note import NoteSigner, parse_note
from auditlog.core.policy import parse_policy
from sealer import store
from sealer.store import Partitions, Witnessing, connect_pool, load_head, seal
from tests.conftest import Services, scratch_database
from tests.integration.test_sealer_drills import _item

pytestmark = pytest.mark.integration

BASE = "rotation.auditlog.test"
TOPIC = "audit.rotation"


@pytest.fixture
def database(services: Services) -> Iterator[str]:
    with scratch_database(
        services.database_url, f"auditlog_rotation_{secrets.token_hex(4)}"
    ) as url:
        yield url


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
    )


def _audit(tmp_path: Path, url: str, key: str) -> dict[str, Any]:
    result = _cli(
        tmp_path, "audit", "--database-url", url, "--key", key, "--json", "--no-progress",
        "--no-state",
    )  # fmt: skip
    assert result.stdout.startswith("{"), result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    report["rc"] = result.returncode
    return report


async def _seal_phases(url: str, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Seal three batches into log 0 (before, during, after the overlap) and one into log 1;
    returns log 0's stored notes, oldest first."""
    hasher = get_hasher("rfc6962-sha256")
    pool = await connect_pool(url, max_size=2)
    try:
        with monkeypatch.context() as old_sealer:
            # The sealer as it was: one signature, under the signing key's own name.
            old_sealer.setattr(store, "checkpoint_signers", lambda key, origin, **_: [key])
            head = await load_head(pool, TOPIC, 0, BASE, hasher, signer=signer)
            other = await load_head(pool, TOPIC, 1, BASE, hasher, signer=signer)
        items = [_item(i) for i in range(30)]
        await Partitions().ensure(pool, head.log_id, [i.received_us for i in items])
        await Partitions().ensure(pool, other.log_id, [i.received_us for i in items])
        async with pool.acquire() as conn:
            with monkeypatch.context() as old_sealer:
                old_sealer.setattr(store, "checkpoint_signers", lambda key, origin, **_: [key])
                head = (await seal(conn, head, hasher, signer, items[:10], 10)).head
            head = (await seal(conn, head, hasher, signer, items[10:20], 20)).head
            await seal(conn, head, hasher, signer, items[20:], 30, legacy_name=False)
            await seal(conn, other, hasher, signer, items[:5], 5)
        notes = await pool.fetch(
            "SELECT note FROM checkpoints WHERE log_id = $1 ORDER BY size", head.log_id
        )
        return [row["note"] for row in notes]
    finally:
        await pool.close()


async def test_a_rotated_log_keeps_verifying(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "log.skey"
    deployment = write_signing_key(key_file, BASE)
    signer = NoteSigner.from_skey(key_file.read_text().strip())
    notes = await _seal_phases(database, signer, monkeypatch)
    origin, other_origin = f"{BASE}/{TOPIC}/0", f"{BASE}/{TOPIC}/1"
    names = [[sig.name for sig in parse_note(note).signatures] for note in notes]
    # Birth and the first batch by the old sealer; the first new checkpoint carries both names.
    assert names == [[BASE], [BASE], [origin, BASE], [origin]]

    for key in (deployment, str(key_file.with_suffix(".vkey"))):
        report = _audit(tmp_path, database, key)
        assert report["rc"] == 0, report
        assert {e["log"]: e["checkpoints_verified"] for e in report["logs"]} == {
            f"{TOPIC}-0": 4,
            f"{TOPIC}-1": 2,
        }

    # Each log's own vkey, as `auditlog logs` prints them, audits every log clean.
    listed = _cli(tmp_path, "logs", "--database-url", database, "--key", deployment, "--format",
                  "vkeys")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    verifier = signer.verifier
    assert listed.stdout.split() == [log_vkey(verifier, origin), log_vkey(verifier, other_origin)]
    vkeys_file = tmp_path / "logs.vkeys"
    vkeys_file.write_text(listed.stdout)
    report = _audit(tmp_path, database, str(vkeys_file))
    assert report["rc"] == 0, report

    # One log's vkey verifies that log's checkpoints, old and new, and none of the other's.
    report = _audit(tmp_path, database, log_vkey(verifier, origin))
    assert report["rc"] == 1, report
    bad = {(f["log"], f["kind"]) for f in report["findings"]}
    assert (f"{TOPIC}-1", "checkpoint-signature") in bad
    assert all(log == f"{TOPIC}-1" for log, _ in bad)


async def test_a_witness_configured_from_the_log_list_cosigns(
    database: str, tmp_path: Path
) -> None:
    """A witness set up the usual way, from the witness network's log list (the origin is the
    vkey's key name), cosigns a log that signs under its origin only, batch after batch."""
    key_file = tmp_path / "log.skey"
    deployment = write_signing_key(key_file, BASE)
    signer = NoteSigner.from_skey(key_file.read_text().strip())
    hasher = get_hasher("rfc6962-sha256")
    pool = await connect_pool(database, max_size=2)
    witness = None
    try:
        head = await load_head(pool, TOPIC, 0, BASE, hasher, signer=signer, legacy_name=False)
        listed = _cli(tmp_path, "logs", "--database-url", database, "--key", deployment,
                      "--format", "log-list", "--contact", "ops@rotation.test")  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        log_list = tmp_path / "log-list"
        log_list.write_text(listed.stdout)
        witness_key = tmp_path / "witness.skey"
        witness_key.write_text(NoteSigner.generate("w.rotation.test").skey() + "\n")
        witness_vkey = _cli(tmp_path, "witness", "--key", str(witness_key), "--print-vkey")
        witness, url = _start_witness(tmp_path, witness_key, log_list)
        policy = parse_policy(
            f"log {log_vkey(signer.verifier, head.origin)}\n"
            f"witness w {witness_vkey.stdout.strip()} {url}\nquorum w\n"
        )
        witnessing = Witnessing(policy, timeout=5.0)
        items = [_item(i) for i in range(20)]
        await Partitions().ensure(pool, head.log_id, [i.received_us for i in items])
        async with pool.acquire() as conn:
            for upto in (10, 20):
                result = await seal(
                    conn, head, hasher, signer, items[head.size : upto], upto,
                    witnessing=witnessing, legacy_name=False,
                )  # fmt: skip
                head = result.head
                assert result.checkpoint is not None
                verified = policy.verify(result.checkpoint)
                assert (verified.checkpoint.size, set(verified.cosigners)) == (upto, {"w"})
    finally:
        await pool.close()
        if witness is not None:
            witness.terminate()
            witness.wait(20)


def _start_witness(
    tmp_path: Path, key: Path, log_list: Path
) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with (tmp_path / "witness.log").open("wb") as out:
        witness = subprocess.Popen(
            [sys.executable, "-m", "auditlog.cli", "witness", "--listen", f"127.0.0.1:{port}",
             "--key", str(key), "--state", str(tmp_path / "witness.sqlite3"),
             "--log-list", str(log_list)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return witness, url
        except OSError:
            pass
        if witness.poll() is not None or time.monotonic() > deadline:
            witness.kill()
            raise AssertionError((tmp_path / "witness.log").read_text())
        time.sleep(0.1)
