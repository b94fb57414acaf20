"""Retention and erasure through the public read API: ``auditlog query`` serves a pruned clone
with an erased entry; ``auditlog audit --url`` passes (with a token: bundles; without: tiles),
the erased entry's receipt is still served by hash and proves its leaf, and ``auditlog monitor``
remembers the pruned bound and alerts when it goes back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.hashing import get_hasher
from auditlog.core.log_statements import ErasureRecord
from auditlog.core.note import parse_note
from auditlog.core.proof import verify_inclusion
from auditlog.core.receipt import Receipt
from tests.conftest import Services, start_service
from tests.e2e.conftest import _free_port, make_token
from tests.integration.retention_harness import (
    LOG,
    PER_MONTH,
    TOPIC,
    Sealed,
    audit,
    cli,
    cloned,
    run_sql,
)

pytestmark = pytest.mark.integration

ERASED = 3 * PER_MONTH + 20  # above the bound the pruning below sets


@pytest.fixture
def sealed(retention_sealed: Sealed) -> Sealed:
    return retention_sealed


@pytest.fixture(scope="module")
def served(
    retention_sealed: Sealed, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """A pruned clone with one erased entry, served by `auditlog query`: (base, token, url).
    One for the module: the tests only read it, but for the monitor's, which puts back what it
    deletes."""
    sealed = retention_sealed
    tmp_path = tmp_path_factory.mktemp("served")
    for url in cloned(sealed):
        cli(sealed, "retention", "policy", "set", "--keep-months", "2", "--database-url", url)
        proc = cli(sealed, "retention", "apply", "--as-of", "2025-06-15", "--database-url", url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = cli(sealed, "erase", "--hash", sealed.hashes[(LOG, ERASED)], "--reason", "api",
                   "--database-url", url)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        port = _free_port()
        env = {**os.environ, "AUDITLOG_DATABASE_URL": url, "AUDITLOG_PORT": str(port),
               "AUDITLOG_TOPIC": TOPIC}  # fmt: skip
        token = make_token(Services(services.kafka_bootstrap, url, TOPIC), {"search"})
        base = f"http://127.0.0.1:{port}"
        service = start_service("query", env, tmp_path / "query.log", f"{base}/healthz", 30)
        try:
            yield base, token, url
        finally:
            service.terminate()
            service.wait(20)


def test_api_audit_accepts_pruned_and_erased(sealed: Sealed, served: tuple[str, str, str]) -> None:
    base, token, _ = served
    for args in (("--token", token), ()):
        proc = cli(sealed, "audit", "--url", base, "--key", str(sealed.vkey_file), "--json",
                   "--no-state", "--no-progress", *args)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"pruned_below": 900' in proc.stdout


def test_erased_entry_keeps_its_receipt(
    sealed: Sealed, served: tuple[str, str, str], tmp_path: Path
) -> None:
    base, token, _ = served
    digest = sealed.hashes[(LOG, ERASED)]
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.get(f"{base}/v1/receipts/{digest}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    receipt = Receipt.from_text(answer.text)
    assert receipt.index == ERASED
    records = httpx.get(f"{base}/v1/logs/{LOG}/erasures", headers=headers, timeout=10).json()
    record = ErasureRecord.from_text(parse_note(records["erasures"][0]).text)
    assert record.event_hash.hex() == digest and record.index == ERASED
    cp = Checkpoint.from_text(parse_note(receipt.checkpoint).text)
    verify_inclusion(
        get_hasher("rfc6962-sha256"), ERASED, cp.size, record.leaf, list(receipt.proof), cp.root
    )
    assert httpx.get(f"{base}/v1/logs/{LOG}/erasures", timeout=10).status_code == 401
    # The same, offline, with the command line: the receipt and the record, nothing else.
    (tmp_path / "r.tlog-proof").write_text(answer.text)
    (tmp_path / "record.note").write_text(records["erasures"][0])
    verify = ("verify", "receipt", str(tmp_path / "r.tlog-proof"), "--key", str(sealed.vkey_file))
    proc = cli(sealed, *verify, "--erasure", str(tmp_path / "record.note"))
    assert proc.returncode == 0 and f"an entry with hash {digest}" in proc.stdout, proc.stdout
    other = httpx.get(f"{base}/v1/logs/{LOG}/receipts/{ERASED + 1}", timeout=10, headers=headers)
    (tmp_path / "r.tlog-proof").write_text(other.text)
    proc = cli(sealed, *verify, "--erasure", str(tmp_path / "record.note"))
    assert proc.returncode == 1, proc.stdout


def test_monitor_remembers_the_bound(
    sealed: Sealed, served: tuple[str, str, str], tmp_path: Path
) -> None:
    base, _, url = served
    state = tmp_path / "monitor.json"
    args = ("monitor", "--url", base, "--key", str(sealed.vkey_file), "--state", str(state),
            "--once")  # fmt: skip
    first = cli(sealed, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "auditlog-pruned/v1" in state.read_text()
    gone = run_sql(url, "DELETE FROM pruned_bounds WHERE log_id = $1 RETURNING *", LOG)
    try:
        second = cli(sealed, *args)
        assert second.returncode != 0
        assert "pruned-bound-backwards" in second.stderr
        assert audit(sealed, url, "--no-state")[0] == 1
    finally:
        for row in gone:  # the module's other tests read this clone
            run_sql(
                url,
                "INSERT INTO pruned_bounds (log_id, below, size, note, created_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                *(row[c] for c in ("log_id", "below", "size", "note", "created_at")),
            )
