"""The verifier's memory against a really sealed database: what `auditlog audit` catches only
because it remembers (by default, in a per-user state file), and what it says about it.

Each case audits a clone of the sealed template (tests/integration/tamper_harness.py) once
while it is intact, so the default state file learns both logs, then damages it in SQL as a DBA
could and audits again. The state files live under the module's XDG_STATE_HOME, never in the
real home directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.tamper_harness import (
    LOG,
    ORIGIN,
    OTHER,
    TOPIC,
    Pristine,
    assert_named,
    assert_other_log_clean,
    audit_db,
    damage,
    delete_log,
    findings,
    roll_back_with_history,
    sql,
)

pytestmark = pytest.mark.integration

LOG_ORIGIN = f"{ORIGIN}/{TOPIC}/0"


def learned(pristine: Pristine, clone: str) -> Path:
    """Audit the intact clone with the default state; the state file it wrote."""
    rc, report, out = audit_db(pristine, clone)
    assert rc == 0, out
    path = Path(report["state"])
    assert path.parent == pristine.state_home / "auditlog", report["state"]
    assert path.name.startswith("audit-") and f"state: {path}" in out
    logs = json.loads(path.read_text())["logs"]
    assert {o: (r["log"], r["hash_scheme"]) for o, r in logs.items()} == {
        LOG_ORIGIN: (LOG, "rfc6962-sha256"),
        f"{ORIGIN}/{TOPIC}/1": (OTHER, "pangea-sha256"),
    }
    return path


def test_the_default_state_catches_a_rollback_with_its_history(
    pristine: Pristine, clone: str
) -> None:
    learned(pristine, clone)
    damage(clone, lambda conn: roll_back_with_history(pristine, conn))
    rc, report, out = audit_db(pristine, clone)  # no --state: the default remembers
    assert rc == 1, out
    assert "from state" in assert_named(report, "rollback", 316, None)["detail"]
    assert_other_log_clean(report)


def test_a_deleted_log_is_named_by_the_state(pristine: Pristine, clone: str) -> None:
    state = learned(pristine, clone)
    damage(clone, delete_log)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    (found,) = findings(report)
    assert (found["log"], found["kind"]) == (LOG, "missing-log")
    assert LOG_ORIGIN in found["detail"] and "size 617" in found["detail"]
    assert {entry["log"]: entry["findings"] for entry in report["logs"]} == {LOG: 1, OTHER: 0}
    # Asking for the gone log by its id is the same finding, not an unknown-log usage error.
    rc, report, out = audit_db(pristine, clone, "--log", LOG)
    assert rc == 1 and [f["kind"] for f in findings(report)] == ["missing-log"], out
    # Without memory nothing is missing: that is what --no-state gives up.
    rc, report, out = audit_db(pristine, clone, "--no-state")
    assert rc == 0 and report["state"] is None, out
    assert "state: none (--no-state)" in out
    # Retiring a log on purpose: forget it once, and the audits pass again.
    rc, _, out = audit_db(pristine, clone, "--forget", LOG_ORIGIN)
    assert rc == 0, out
    assert LOG_ORIGIN not in json.loads(state.read_text())["logs"]
    rc, _, out = audit_db(pristine, clone, "--forget", "never.seen/x/0")
    assert rc == 2 and "not remembered" in out


def test_a_switched_hash_scheme_is_named_and_the_remembered_one_is_used(
    pristine: Pristine, clone: str
) -> None:
    learned(pristine, clone)
    sql(clone, "UPDATE logs SET hash_scheme = 'rfc6962-blake3' WHERE log_id = $1", LOG)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    # Verified with the remembered SHA-256, the log itself is intact: one finding, the switch.
    (found,) = findings(report)
    assert (found["log"], found["kind"]) == (LOG, "scheme-changed")
    assert "verified with rfc6962-sha256" in found["detail"]
    # Taking the scheme from the table instead, every hash disagrees.
    rc, report, out = audit_db(pristine, clone, "--no-state")
    assert rc == 1 and len(findings(report)) > 1, out


def test_a_renamed_log_is_named(pristine: Pristine, clone: str) -> None:
    learned(pristine, clone)
    sql(clone, "UPDATE logs SET origin = 'impostor.test/x/0' WHERE log_id = $1", LOG)
    rc, report, out = audit_db(pristine, clone)
    assert rc == 1, out
    found = assert_named(report, "renamed-log", None, None)
    assert "now serves origin impostor.test/x/0" in found["detail"]
    assert_other_log_clean(report)


def test_a_version_1_state_file_is_migrated(pristine: Pristine, clone: str, tmp_path: Path) -> None:
    state = tmp_path / "v1.json"
    state.write_text(json.dumps({"version": 1, "logs": {LOG_ORIGIN: pristine.notes[316]}}))
    rc, _, out = audit_db(pristine, clone, "--state", str(state))
    assert rc == 0, out
    assert "migrated from version 1" in out
    data = json.loads(state.read_text())
    assert data["version"] == 2
    assert data["logs"][LOG_ORIGIN] == {
        "log": LOG,
        "hash_scheme": "rfc6962-sha256",
        "checkpoint": pristine.notes[617],
    }
