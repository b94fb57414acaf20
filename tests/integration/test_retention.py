"""Retention on a really sealed database: expired months go, every other proof still verifies.

The logs span January to April 2025 (tests/integration/retention_harness.py). A default policy
of two months, judged as of mid-June, expires January to March: each log drops its own leaves
of those months under a signed pruned bound, and the audit passes. Receipts of the retained
entries and consistency proofs from checkpoints signed before the pruning are rebuilt from the
pruned database's tiles and verified by our verifier and by Go's sumdb/tlog. A delete above the
bound, a bound gone backwards (in the database, or against what the verifier remembers), and a
statement signed by another key are all still caught.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.entry import leaf_hash, log_entry
from auditlog.core.hashing import get_hasher
from auditlog.core.log_statements import PrunedBound, sign_statement
from auditlog.core.note import NoteSigner, parse_note
from auditlog.core.proof import (
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from auditlog.core.tiles import TileID, encode_bundle, entries_path, tile_path
from tests.go_tools import go_build
from tests.integration.retention_harness import (
    LOG,
    ORIGIN,
    PANGEA,
    PER_MONTH,
    SIZE,
    STRAGGLER,
    Sealed,
    audit,
    cli,
    cloned,
    kinds,
    run_sql,
)

pytestmark = pytest.mark.integration

AS_OF = "2025-06-15"
GO_MODULE = Path(__file__).resolve().parent.parent / "conformance" / "go"


@pytest.fixture
def sealed(retention_sealed: Sealed) -> Sealed:
    return retention_sealed


@pytest.fixture
def clone(sealed: Sealed) -> Iterator[str]:
    yield from cloned(sealed)


def _prune(sealed: Sealed, url: str, keep: int = 2) -> None:
    proc = cli(sealed, "retention", "policy", "set", "--keep-months", str(keep),
               "--database-url", url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = cli(sealed, "retention", "apply", "--as-of", AS_OF, "--database-url", url)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _bound(report: dict[str, object], log: str = LOG) -> int:
    logs = {entry["log"]: entry for entry in report["logs"]}  # type: ignore[attr-defined]
    return int(logs[log]["pruned_below"])


def test_plan_then_apply_drops_expired_months_and_audit_passes(sealed: Sealed, clone: str) -> None:
    cli(sealed, "retention", "policy", "set", "--keep-months", "2", "--database-url", clone)
    plan = cli(sealed, "retention", "plan", "--as-of", AS_OF, "--database-url", clone)
    assert plan.returncode == 0, plan.stderr
    # January to March expire; the January straggler sits among February's entries, so the
    # bound is past March's last entry, and nothing of April goes.
    assert f"{LOG}: keep 2 months; pruned below 0 -> {3 * PER_MONTH}" in plan.stdout
    assert plan.stdout.count("events_2025_0") >= 6
    before = run_sql(clone, "SELECT count(*) AS n FROM events")[0]["n"]
    assert before == 2 * SIZE

    _prune(sealed, clone)
    left = run_sql(clone, "SELECT log_id, min(idx) AS lo, count(*) AS n FROM events GROUP BY 1")
    assert {r["log_id"]: (r["lo"], r["n"]) for r in left} == {
        LOG: (3 * PER_MONTH, PER_MONTH),
        PANGEA: (3 * PER_MONTH, PER_MONTH),
    }
    # Bundles of whole chunks below the bound are gone, search blocks too; tiles all stay.
    assert run_sql(clone, "SELECT min(idx) AS m FROM bundles WHERE log_id = $1", LOG)[0]["m"] == 3
    blocks = run_sql(clone, "SELECT min(first_idx) AS m FROM search_blocks WHERE log_id=$1", LOG)
    assert blocks[0]["m"] >= 3 * PER_MONTH - 64
    rc, report, out = audit(sealed, clone)
    assert rc == 0, out
    assert _bound(report) == 3 * PER_MONTH and _bound(report, PANGEA) == 3 * PER_MONTH

    # Running it again changes nothing and still passes.
    proc = cli(sealed, "retention", "apply", "--as-of", AS_OF, "--database-url", clone)
    assert proc.returncode == 0 and "dropped" not in proc.stdout, proc.stdout
    assert audit(sealed, clone, "--no-state")[0] == 0


def test_straggler_below_the_bound_is_kept_and_checked(sealed: Sealed, clone: str) -> None:
    # Keep four months: only January goes, with the straggler sealed among February's entries.
    _prune(sealed, clone, keep=4)
    rc, report, out = audit(sealed, clone, "--no-state")
    assert rc == 0, out
    assert _bound(report) == STRAGGLER + 1
    # February's entries below the bound are still there, and still checked: damage is named.
    assert run_sql(clone, "SELECT count(*) AS n FROM events WHERE log_id = $1 AND idx < $2",
                   LOG, STRAGGLER + 1)[0]["n"] == STRAGGLER - PER_MONTH  # fmt: skip
    run_sql(clone, "UPDATE events SET envelope = envelope || ' '::bytea"
            " WHERE log_id = $1 AND idx = $2", LOG, PER_MONTH + 1)  # fmt: skip
    rc, report, _ = audit(sealed, clone, "--no-state")
    assert rc == 1 and "envelope-hash-mismatch" in kinds(report)


def test_delete_above_the_bound_is_still_caught(sealed: Sealed, clone: str) -> None:
    _prune(sealed, clone)
    run_sql(clone, "DELETE FROM events WHERE log_id = $1 AND idx = $2", LOG, 3 * PER_MONTH + 7)
    rc, report, _ = audit(sealed, clone, "--no-state")
    assert rc == 1
    missing = [f for f in report["findings"] if f["kind"] == "missing-entry"]
    assert [(f["log"], f["index"]) for f in missing] == [(LOG, 3 * PER_MONTH + 7)]


def test_delete_without_any_statement_is_tampering(sealed: Sealed, clone: str) -> None:
    run_sql(clone, "DELETE FROM events WHERE log_id = $1 AND idx < 10", LOG)
    rc, report, _ = audit(sealed, clone, "--no-state")
    assert rc == 1 and "missing-entry" in kinds(report)


def test_bound_going_backwards_is_caught(sealed: Sealed, clone: str) -> None:
    _prune(sealed, clone)
    signer = NoteSigner.from_skey(sealed.key_file.read_text().strip())
    note = run_sql(clone, "SELECT checkpoint FROM logs WHERE log_id = $1", LOG)[0]["checkpoint"]
    cp = Checkpoint.from_text(parse_note(note).text)
    # A later statement (a larger checkpoint would do; the same one, an hour later, is enough)
    # with a lower bound: properly signed, and still caught.
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lower = PrunedBound(f"{ORIGIN}/retention.test/0", 100, cp.size, cp.root, later)
    run_sql(clone, "INSERT INTO pruned_bounds (log_id, below, size, note) VALUES ($1,$2,$3,$4)",
            LOG, 100, cp.size + 0, sign_statement(lower, signer))  # fmt: skip
    rc, report, _ = audit(sealed, clone, "--no-state")
    assert rc == 1 and "pruned-bound-backwards" in kinds(report), report


def test_statement_removed_after_the_verifier_saw_it(sealed: Sealed, clone: str) -> None:
    state = sealed.work / f"state-{clone.rsplit('/', 1)[-1]}.json"
    _prune(sealed, clone)
    assert audit(sealed, clone, "--state", str(state))[0] == 0
    run_sql(clone, "DELETE FROM pruned_bounds WHERE log_id = $1", LOG)
    rc, report, _ = audit(sealed, clone, "--state", str(state))
    assert rc == 1
    assert {"pruned-bound-backwards", "missing-entry"} <= kinds(report)


def test_statement_signed_by_another_key_is_not_accepted(sealed: Sealed, clone: str) -> None:
    _prune(sealed, clone)
    other = NoteSigner.generate(ORIGIN)
    note = run_sql(clone, "SELECT note FROM pruned_bounds WHERE log_id = $1", LOG)[0]["note"]
    forged = sign_statement(PrunedBound.from_text(parse_note(note).text), other)
    run_sql(clone, "UPDATE pruned_bounds SET note = $2 WHERE log_id = $1", LOG, forged)
    rc, report, _ = audit(sealed, clone, "--no-state")
    assert rc == 1
    assert {"pruned-statement-invalid", "missing-entry"} <= kinds(report)


def _tiles(url: str, log: str) -> dict[TileID, bytes]:
    rows = run_sql(url, "SELECT level, idx, data FROM tiles WHERE log_id = $1", log)
    return {TileID(r["level"], r["idx"]): bytes(r["data"]) for r in rows}


def _checkpoints(url: str, log: str) -> dict[int, bytes]:
    rows = run_sql(url, "SELECT size, root FROM checkpoints WHERE log_id = $1", log)
    return {r["size"]: bytes(r["root"]) for r in rows}


def test_receipts_and_consistency_of_the_rest_verify(sealed: Sealed, clone: str) -> None:
    _prune(sealed, clone)
    for log, scheme in ((LOG, "rfc6962-sha256"), (PANGEA, "pangea-sha256")):
        hasher = get_hasher(scheme)
        tiles, roots = _tiles(clone, log), _checkpoints(clone, log)
        for index in (3 * PER_MONTH, 3 * PER_MONTH + 131, SIZE - 1):
            leaf = leaf_hash(hasher, sealed.envelopes[(log, index)])
            proof = inclusion_proof(hasher, index, SIZE, tiles)
            verify_inclusion(hasher, index, SIZE, leaf, proof, roots[SIZE])
        for old in (100, 300, 900):
            proof = consistency_proof(hasher, old, SIZE, tiles)
            verify_consistency(hasher, old, SIZE, roots[old], roots[SIZE], proof)


def test_go_verifies_the_pruned_logs_proofs(sealed: Sealed, clone: str, tmp_path: Path) -> None:
    from tests.unit.test_go_conformance import go_ok

    binary = go_build(GO_MODULE, tmp_path / "conformance")
    _prune(sealed, clone)
    hasher = get_hasher("rfc6962-sha256")
    tiles, roots = _tiles(clone, LOG), _checkpoints(clone, LOG)
    note = run_sql(clone, "SELECT checkpoint FROM logs WHERE log_id = $1", LOG)[0]["checkpoint"]
    # Go recomputes the tree from every entry: the test still knows the pruned ones, the
    # database does not. The tiles and proofs are the pruned database's.
    entries = [log_entry(sealed.envelopes[(LOG, i)]) for i in range(SIZE)]

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    payload = {
        "vkey": NoteSigner.from_skey(sealed.key_file.read_text().strip())
        .named(f"{ORIGIN}/retention.test/0")
        .vkey(),
        "checkpoint": note,
        "origin": f"{ORIGIN}/retention.test/0",
        "entries": [b64(e) for e in entries],
        "tiles": {tile_path(t.level, t.index, len(d) // 32): b64(d) for t, d in tiles.items()},
        "bundles": {
            entries_path(i // 256, len(entries[i : i + 256])): b64(
                encode_bundle(entries[i : i + 256])
            )
            for i in range(0, SIZE, 256)
        },
        "inclusion": [
            {
                "index": i,
                "size": SIZE,
                "leaf": b64(hasher.hash_leaf(entries[i])),
                "root": b64(roots[SIZE]),
                "proof": [b64(h) for h in inclusion_proof(hasher, i, SIZE, tiles)],
            }
            for i in (3 * PER_MONTH, SIZE - 1)
        ],
        "consistency": [
            {
                "size1": m,
                "size2": SIZE,
                "root1": b64(roots[m]),
                "root2": b64(roots[SIZE]),
                "proof": [b64(h) for h in consistency_proof(hasher, m, SIZE, tiles)],
            }
            for m in (100, 900)
        ],
    }
    assert go_ok(binary, "check", payload)["ok"] is True


def test_a_tenant_kept_longer_holds_its_months_back(sealed: Sealed, clone: str) -> None:
    cli(sealed, "retention", "policy", "set", "--keep-months", "2", "--database-url", clone)
    # Tenant t1 has events in every month: keeping it 4 months holds back February and March.
    cli(sealed, "retention", "policy", "set", "--tenant", "t1", "--keep-months", "4",
        "--database-url", clone)  # fmt: skip
    plan = cli(sealed, "retention", "plan", "--as-of", AS_OF, "--json", "--database-url", clone)
    assert plan.returncode == 0, plan.stderr
    plans = {p["log"]: p for p in json.loads(plan.stdout)}
    assert len(plans[LOG]["drop"]) == 1 and plans[LOG]["drop"][0].startswith("events_2025_01_")
    assert "tenants kept longer" in plans[LOG]["held"][0]
    _prune(sealed, clone)
    rc, report, out = audit(sealed, clone, "--no-state")
    assert rc == 0, out
    assert _bound(report) == STRAGGLER + 1
    listed = cli(sealed, "retention", "policy", "list", "--database-url", clone).stdout
    assert "default\t-\t2 months" in listed and "tenant\tt1\t4 months" in listed


def test_a_tenant_kept_shorter_has_its_expired_events_erased(sealed: Sealed, clone: str) -> None:
    cli(sealed, "retention", "policy", "set", "--keep-months", "2", "--database-url", clone)
    # Tenant t0 keeps one month: its April events (which the log keeps) go one by one.
    cli(sealed, "retention", "policy", "set", "--tenant", "t0", "--keep-months", "1",
        "--database-url", clone)  # fmt: skip
    plan = cli(sealed, "retention", "plan", "--as-of", AS_OF, "--json", "--database-url", clone)
    plans = {p["log"]: p for p in json.loads(plan.stdout)}
    assert plans[LOG]["erase"] == [
        {"tenant": "t0", "received_before": "2025-05-01", "events": SIZE // 2}
    ]
    _prune(sealed, clone)
    left = run_sql(clone, "SELECT count(*) AS n FROM events WHERE tenant_id = 't0'")
    assert left[0]["n"] == 0
    assert run_sql(clone, "SELECT count(*) AS n FROM erasures")[0]["n"] == 2 * (PER_MONTH // 2)
    rc, report, out = audit(sealed, clone, "--no-state")
    assert rc == 0, out
    erased = {entry["log"]: entry["erased"] for entry in report["logs"]}
    assert len(erased[LOG]) == PER_MONTH // 2
    assert erased[LOG][0]["reason"] == "retention policy of tenant t0: keep-months 1"


def test_entries_a_forward_destination_has_not_received_are_kept(
    sealed: Sealed, clone: str
) -> None:
    cli(sealed, "retention", "policy", "set", "--keep-months", "2", "--database-url", clone)
    run_sql(clone, "INSERT INTO forward_destinations (name, kind) VALUES ('siem', 'syslog')")
    # siem has received LOG up to the middle of February, and nothing of PANGEA yet.
    run_sql(
        clone,
        "INSERT INTO forward_cursors (destination, log_id, next_idx) VALUES ('siem', $1, $2)",
        LOG,
        PER_MONTH + PER_MONTH // 2,
    )
    plan = cli(sealed, "retention", "plan", "--as-of", AS_OF, "--json", "--database-url", clone)
    assert plan.returncode == 0, plan.stderr
    plans = {p["log"]: p for p in json.loads(plan.stdout)}
    assert len(plans[LOG]["drop"]) == 1 and plans[LOG]["drop"][0].startswith("events_2025_01_")
    assert "forward destination has not received" in plans[LOG]["held"][0]
    assert plans[PANGEA]["drop"] == []
    # Once siem has everything (or is forgotten), the months go.
    run_sql(clone, "DELETE FROM forward_destinations WHERE name = 'siem'")
    plan = cli(sealed, "retention", "plan", "--as-of", AS_OF, "--json", "--database-url", clone)
    plans = {p["log"]: p for p in json.loads(plan.stdout)}
    assert len(plans[LOG]["drop"]) >= 3 and len(plans[PANGEA]["drop"]) >= 3
