"""A key-name rotation on a real log (docs/verification.md, the key-name rule).

A log sealed by a sealer from before the rule (every checkpoint signed under the deployment-wide
name only), then by the sealer of today during the overlap (both names), then after it (the
origin only): every stored checkpoint keeps verifying, and ``auditlog audit`` is clean with the
deployment's vkey, with the file of each log's vkey (``auditlog logs --format vkeys``), and with
the one log's own vkey; another log's vkey verifies none of them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditlog.cli.keys import write_signing_key
from auditlog.core.hashing import get_hasher
from auditlog.core.log_keys import log_vkey
from auditlog.core.note import NoteSigner, parse_note
from sealer import store
from sealer.store import Partitions, connect_pool, load_head, seal
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
