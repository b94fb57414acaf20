"""The verifier's memory: the state file (v2, and v1 migrated), the listing held against it
(missing, renamed and re-schemed logs, pinned schemes), its default place, and what the audit
and the monitor learn into it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditlog.core.audit import AuditedLog, Finding
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.proof import consistency_proof
from auditlog.core.tiles import TileID
from auditlog.verify.audit_state import AuditRun, audit_run, check_requested
from auditlog.verify.monitor import Alert, monitor_once
from auditlog.verify.read_api import ConsistencyAnswer
from auditlog.verify.trust_state import (
    ListedLog,
    RememberedLog,
    StateError,
    TrustState,
    default_state_path,
    load_state,
    reconcile,
    save_state,
)

SHA, PANGEA = "rfc6962-sha256", "pangea-sha256"
HASHER = get_hasher(SHA)
SIGNER = NoteSigner.generate("state.example")
A, B = "state.example/t/0", "state.example/t/1"


def _tree(n: int) -> tuple[bytes, dict[TileID, bytes]]:
    result = integrate(HASHER, 0, {}, [HASHER.hash_leaf(b"%d" % i) for i in range(n)])
    return result.root, result.tiles


def note(n: int, origin: str = A) -> str:
    return sign_note(Checkpoint(origin, n, _tree(n)[0]).to_text(), [SIGNER])


# -- the file ----------------------------------------------------------------------------------
def test_version_2_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    assert load_state(path).logs == {}  # not there yet: nothing remembered
    state = TrustState(
        {A: RememberedLog("t-0", SHA, note(3)), B: RememberedLog("t-1", PANGEA, None)}
    )
    save_state(path, state)
    data = json.loads(path.read_text())
    assert data == {
        "version": 2,
        "logs": {
            A: {"log": "t-0", "hash_scheme": SHA, "checkpoint": note(3)},
            B: {"log": "t-1", "hash_scheme": PANGEA, "checkpoint": None},
        },
    }
    again = load_state(path)
    assert again.logs == state.logs and again.version == 2
    assert again.logs[A].size() == 3 and again.logs[B].size() is None
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left


def test_version_1_is_read_and_migrated_on_save(tmp_path: Path) -> None:
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"version": 1, "logs": {A: note(3), B: note(2, B)}}))
    state = load_state(path)
    assert state.version == 1
    assert state.logs[A] == RememberedLog(None, None, note(3))
    # The next run learns id and scheme of the logs still listed; the others keep nulls.
    reconciled = reconcile(state, [ListedLog("t-0", A, PANGEA)])
    assert reconciled.schemes == {A: PANGEA}  # nothing remembered to pin it to
    assert [f.kind for f in reconciled.findings] == ["missing-log"]  # B: v1 remembered it
    state.learn(A, "t-0", PANGEA, None)
    save_state(path, state)
    data = json.loads(path.read_text())
    assert data["version"] == 2
    assert data["logs"][A] == {"log": "t-0", "hash_scheme": PANGEA, "checkpoint": note(3)}
    assert data["logs"][B] == {"log": None, "hash_scheme": None, "checkpoint": note(2, B)}
    assert load_state(path).logs == state.logs


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 3, "logs": {}}',
        '{"version": 1, "logs": {"o": {"log": "x"}}}',
        '{"version": 2, "logs": {"o": "a note"}}',
        '{"version": 2, "logs": {"o": {"log": "x", "hash_scheme": "md5", "checkpoint": null}}}',
        '{"version": 2, "logs": {"o": {"log": 1, "hash_scheme": null, "checkpoint": null}}}',
        '{"version": 2, "logs": {"o": {"log": "x", "hash_scheme": null, "checkpoint": 5}}}',
        '{"version": 2, "logs": {"o": {"log": "x", "hash_scheme": null}}}',
    ],
)
def test_malformed_state_files_are_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError):
        load_state(path)


def test_learning_never_drops_a_checkpoint_and_forget_is_explicit() -> None:
    state = TrustState()
    state.learn(A, "t-0", SHA, note(3))
    state.learn(A, "t-0", SHA, None)  # a look that trusted nothing new keeps the old head
    assert state.logs[A].checkpoint == note(3)
    assert state.checkpoints() == {A: note(3)}
    assert state.forget([A, "never.seen"]) == [A]
    assert state.logs == {}


# -- the listing against the state -------------------------------------------------------------
def remembered() -> TrustState:
    return TrustState({A: RememberedLog("t-0", SHA, note(3)), B: RememberedLog("t-1", SHA, None)})


def test_a_faithful_listing_has_no_findings_and_pins_remembered_schemes() -> None:
    listing = [ListedLog("t-0", A, SHA), ListedLog("t-1", B, SHA), ListedLog("t-2", "new", PANGEA)]
    reconciled = reconcile(remembered(), listing)
    assert reconciled.findings == ()
    assert reconciled.schemes == {A: SHA, B: SHA, "new": PANGEA}  # new: trusted on first use


def test_a_log_missing_from_the_listing_is_named() -> None:
    reconciled = reconcile(remembered(), [ListedLog("t-1", B, SHA)])
    (found,) = reconciled.findings
    assert (found.log, found.origin, found.kind) == ("t-0", A, "missing-log")
    assert "last verified at size 3" in found.detail
    assert reconciled.unlisted() == [found]
    # An empty listing loses every remembered log: that fails, it is not "nothing to check".
    assert {f.kind for f in reconcile(remembered(), []).findings} == {"missing-log"}
    assert len(reconcile(remembered(), []).findings) == 2


def test_renamed_logs_are_named_both_ways() -> None:
    # The origin moved to another log id.
    moved = reconcile(remembered(), [ListedLog("t-9", A, SHA), ListedLog("t-1", B, SHA)])
    (found,) = moved.findings
    assert (found.log, found.kind) == ("t-9", "renamed-log")
    assert moved.flagged("t-9") and moved.unlisted() == []
    # The log id now serves another origin, and the remembered origin is listed nowhere.
    swapped = reconcile(remembered(), [ListedLog("t-0", "impostor", SHA), ListedLog("t-1", B, SHA)])
    (found,) = swapped.findings
    assert (found.log, found.origin, found.kind) == ("t-0", A, "renamed-log")
    assert "now serves origin impostor" in found.detail


def test_a_switched_scheme_is_a_finding_and_the_remembered_scheme_is_used() -> None:
    reconciled = reconcile(remembered(), [ListedLog("t-0", A, PANGEA), ListedLog("t-1", B, SHA)])
    (found,) = reconciled.findings
    assert (found.log, found.kind) == ("t-0", "scheme-changed")
    assert reconciled.schemes[A] == SHA


def test_selected_logs_limit_what_is_compared() -> None:
    listing = [ListedLog("t-1", B, SHA)]
    assert reconcile(remembered(), listing, ["t-1"]).findings == ()
    (found,) = reconcile(remembered(), listing, ["t-0"]).findings
    assert found.kind == "missing-log"
    check_requested(["t-0"], listing, remembered())  # remembered: a finding, not a usage error
    with pytest.raises(LookupError, match="no such log: t-7"):
        check_requested(["t-7"], listing, remembered())


# -- what an audit learns ----------------------------------------------------------------------
def result(log: str, origin: str, head: str | None, *kinds: str) -> AuditedLog:
    findings = tuple(Finding(log, k, None, None, "d") for k in kinds)
    return AuditedLog(log, origin, 3, 3, 1, findings, 0, head)


def test_audit_run_names_gone_logs_and_learns_only_what_passed() -> None:
    state = remembered()
    listing = [
        ListedLog("t-1", B, PANGEA),
        ListedLog("t-2", "new", SHA),
        ListedLog("t-3", "bad", SHA),
    ]
    reconciled = reconcile(state, listing)
    run = audit_run(
        [
            result("t-1", B, note(5, B)),
            result("t-2", "new", note(4, "new")),
            result("t-3", "bad", None, "leaf-mismatch"),
        ],
        reconciled,
    )
    by_log = {r.log: r for r in run.logs}
    assert [f.kind for f in by_log["t-0"].findings] == ["missing-log"]  # a result of its own
    assert [f.kind for f in by_log["t-1"].findings] == ["scheme-changed"]
    assert isinstance(run, AuditRun)
    run.learn(state)
    assert state.logs[A] == RememberedLog("t-0", SHA, note(3))  # gone, still remembered
    assert state.logs[B] == RememberedLog("t-1", SHA, None)  # flagged: nothing learned
    assert state.logs["new"] == RememberedLog("t-2", SHA, note(4, "new"))
    assert state.logs["bad"] == RememberedLog("t-3", SHA, None)  # damaged, but now remembered


# -- where the state lives ---------------------------------------------------------------------
def test_default_state_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [SIGNER.vkey()]
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    path = default_state_path("audit", "postgresql://u:secret@db.example:5433/audit", keys, env)
    assert path.parent == tmp_path / "xdg" / "auditlog"
    assert path.name.startswith("audit-db.example-5433-audit-") and path.suffix == ".json"
    assert "secret" not in str(path)
    # The password is no part of the identity; host, database, keys and command are.
    same = default_state_path("audit", "postgresql://u:other@db.example:5433/audit", keys, env)
    assert same == path
    others = {
        default_state_path("audit", "postgresql://u@db.example:5433/other", keys, env),
        default_state_path("audit", "postgresql://u@db.example:5433/audit", [], env),
        default_state_path("monitor", "postgresql://u@db.example:5433/audit", keys, env),
    }
    assert path not in others and len(others) == 3
    assert default_state_path("monitor", "http://h:8000/", keys, env) == default_state_path(
        "monitor", "http://h:8000", keys, env
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ({}, {"XDG_STATE_HOME": "relative/dir"}):  # the spec ignores relative paths
        fallback = default_state_path("monitor", "http://h:8000", keys, unset)
        assert fallback.parent == tmp_path / "home" / ".local" / "state" / "auditlog"


# -- what the monitor alerts on and learns -----------------------------------------------------
class FakeApi:
    """The read API's answers a monitor needs, from a dict the test edits."""

    def __init__(self, logs: list[dict[str, object]], notes: dict[str, str], size: int) -> None:
        self.listed, self.notes = logs, notes
        self.tiles = _tree(size)[1]

    def logs(self) -> list[dict[str, object]]:
        return self.listed

    def checkpoint(self, log: str) -> str | None:
        return self.notes.get(log)

    def pruned(self, log: str) -> str | None:
        return None  # these logs prune nothing (retention: tests/integration/test_retention_api.py)

    def consistency(self, log: str, old: int, new: int) -> ConsistencyAnswer:
        return ConsistencyAnswer(log, old, consistency_proof(HASHER, old, new, self.tiles), "")


def watch(api: FakeApi, state: TrustState) -> list[Alert]:
    seen: list[Alert] = []
    _, alerts = monitor_once(api, [SIGNER.verifier], state, emit=seen.append)  # type: ignore[arg-type]
    assert alerts == seen  # every alert is emitted (printed, and POSTed to the webhook)
    return alerts


def test_monitor_remembers_schemes_and_alerts_on_missing_and_switched_logs() -> None:
    api = FakeApi([{"log": "t-0", "origin": A, "hash_scheme": SHA, "size": 3}], {"t-0": note(3)}, 7)
    state = TrustState()
    assert watch(api, state) == []
    assert state.logs[A] == RememberedLog("t-0", SHA, note(3))  # trusted on first use
    # The server now lists another scheme: an alert, and the check still uses SHA-256 (under
    # the listed scheme the consistency proof would not verify: that would be "inconsistent").
    api.listed = [{"log": "t-0", "origin": A, "hash_scheme": PANGEA, "size": 7}]
    api.notes["t-0"] = note(7)
    alerts = watch(api, state)
    assert [(a.kind, a.log) for a in alerts] == [("scheme-changed", "t-0")]
    assert state.logs[A].checkpoint == note(3)  # nothing learned about a flagged log
    # The log is gone from the listing.
    api.listed = []
    alerts = watch(api, state)
    assert [(a.kind, a.log, a.origin, a.trusted_size) for a in alerts] == [
        ("missing-log", "t-0", A, 3)
    ]
    assert A in state.logs  # still remembered: it keeps alerting until forgotten
    # Back as it was, with a larger signed head: it extends the remembered one.
    api.listed = [{"log": "t-0", "origin": A, "hash_scheme": SHA, "size": 7}]
    assert watch(api, state) == []
    assert state.logs[A] == RememberedLog("t-0", SHA, note(7))


def test_monitor_migrates_a_version_1_memory(tmp_path: Path) -> None:
    path = tmp_path / "monitor.json"
    path.write_text(json.dumps({"version": 1, "logs": {A: note(3)}}))
    state = load_state(path)
    api = FakeApi([{"log": "t-0", "origin": A, "hash_scheme": SHA}], {"t-0": note(7)}, 7)
    assert watch(api, state) == []
    save_state(path, state)
    assert json.loads(path.read_text())["logs"][A] == {
        "log": "t-0",
        "hash_scheme": SHA,
        "checkpoint": note(7),
    }
    # A rollback below the migrated checkpoint is still caught.
    api.notes["t-0"] = note(3)
    assert [a.kind for a in watch(api, state)] == ["rollback"]


# -- usage errors come before any state is touched ---------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "--no-state", "--forget", A], "--forget needs a state file"),
        (["audit", "--state", "s.json", "--no-state"], "not allowed with argument"),
        (["monitor", "--url", "http://127.0.0.1:9", "--max-cosignature-age", "60"], "--policy"),
        (["monitor", "--url", "http://127.0.0.1:9", "--no-state", "--forget", A], "--forget"),
    ],
)
def test_state_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    done = subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args, "--key", SIGNER.vkey()],
        capture_output=True, text=True, check=False, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "s.json").exists()
