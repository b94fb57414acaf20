"""What a verifier pins: the origin (``--origin``, a policy's log key names) and how recent
witness cosignatures must be (``Freshness``, always with the current time passed in)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditlog.core.checkpoint import Checkpoint
from auditlog.core.consistency import open_checkpoint, verify_checkpoints
from auditlog.core.cosignature import FUTURE_SKEW, Cosigner, Freshness, split_fresh
from auditlog.core.entry import leaf_hash
from auditlog.core.envelope import Envelope
from auditlog.core.errors import OriginMismatch
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.policy import (
    QuorumNotMet,
    StaleCosignatures,
    key_covers_origin,
    parse_policy,
)
from auditlog.core.proof import consistency_proof, inclusion_proof
from auditlog.core.receipt import Receipt
from auditlog.core.tiles import TileID

HASHER = get_hasher("rfc6962-sha256")
BASE = "pins.example"
ORIGIN = f"{BASE}/audit.events/0"
OTHER_ORIGIN = f"{BASE}/audit.events/1"
LOG = NoteSigner.generate(BASE)
W1, W2 = Cosigner.generate("w1.example"), Cosigner.generate("w2.example")
NOW = 1_750_000_000  # a fixed "now": the core never reads a clock
DAY = 86_400

ENVELOPES = [Envelope({"message": f"m{i}"}, f"2025-01-01T00:00:00.{i:06d}Z") for i in range(9)]


def _tree(n: int, origin: str = ORIGIN) -> tuple[str, dict[TileID, bytes]]:
    result = integrate(HASHER, 0, {}, [leaf_hash(HASHER, e.canonical) for e in ENVELOPES[:n]])
    return Checkpoint(origin, n, result.root).to_text(), result.tiles


def _note(
    n: int,
    origin: str = ORIGIN,
    signer: NoteSigner = LOG,
    cosigned: dict[Cosigner, int] | None = None,
) -> str:
    body, _ = _tree(n, origin)
    note = sign_note(body, [signer])
    for cosigner, timestamp in (cosigned or {}).items():
        note += cosigner.cosign(body, timestamp) + "\n"
    return note


def _policy(quorum: str = "both", log: NoteSigner = LOG) -> str:
    return (
        f"log {log.vkey()}\nwitness W1 {W1.vkey()}\nwitness W2 {W2.vkey()}\n"
        "group both all W1 W2\ngroup either any W1 W2\n"
        f"quorum {quorum}\n"
    )


# -- freshness, pure ---------------------------------------------------------------------------
def test_freshness_bounds_at_fixed_times() -> None:
    fresh = Freshness(now=NOW, max_age=DAY)
    assert fresh.problem(NOW) is None
    assert fresh.problem(NOW - DAY) is None  # exactly the bound: still fresh
    assert fresh.problem(NOW - DAY - 1) == f"{DAY + 1} s old, the bound is {DAY} s"
    assert fresh.problem(NOW + FUTURE_SKEW) is None  # a witness clock slightly ahead
    assert "in the future" in (fresh.problem(NOW + FUTURE_SKEW + 1) or "")
    assert Freshness(NOW, 0).problem(NOW) is None
    assert Freshness(NOW, 0).problem(NOW - 1) is not None
    with pytest.raises(ValueError, match="negative"):
        Freshness(NOW, -1)
    counted, stale = split_fresh({"a": NOW - 10, "b": NOW - DAY - 5, "c": NOW + 3600}, fresh)
    assert counted == {"a": NOW - 10}
    assert set(stale) == {"b", "c"}


def test_stale_cosignatures_do_not_count_toward_the_quorum() -> None:
    policy = parse_policy(_policy("both"))
    recent = _note(5, cosigned={W1: NOW - 60, W2: NOW - 120})
    verified = policy.verify(recent, freshness=Freshness(NOW, DAY))
    assert verified.cosigners == {"W1": NOW - 60, "W2": NOW - 120}
    assert verified.stale == {}
    old = _note(5, cosigned={W1: NOW - 60, W2: NOW - 2 * DAY})
    assert set(policy.verify(old).cosigners) == {"W1", "W2"}  # no bound: any age counts
    with pytest.raises(StaleCosignatures, match=r"W2 172800 s old, the bound is 86400 s"):
        policy.verify(old, freshness=Freshness(NOW, DAY))
    # With "any", the fresh one suffices; the stale one is reported, not counted.
    either = parse_policy(_policy("either")).verify(old, freshness=Freshness(NOW, DAY))
    assert set(either.cosigners) == {"W1"} and set(either.stale) == {"W2"}
    # Stale and missing together: the quorum is not met even counting the stale one.
    lonely = _note(5, cosigned={W2: NOW - 2 * DAY})
    with pytest.raises(QuorumNotMet, match="stale: W2") as caught:
        policy.verify(lonely, freshness=Freshness(NOW, DAY))
    assert not isinstance(caught.value, StaleCosignatures)
    future = _note(5, cosigned={W1: NOW, W2: NOW + 2 * FUTURE_SKEW})
    with pytest.raises(StaleCosignatures, match="in the future"):
        policy.verify(future, freshness=Freshness(NOW, DAY))


def test_freshness_applies_to_the_new_checkpoint_only() -> None:
    policy = parse_policy(_policy("both"))
    old = _note(3, cosigned={W1: NOW - 30 * DAY, W2: NOW - 30 * DAY})
    new = _note(7, cosigned={W1: NOW - 5, W2: NOW - 5})
    _, tiles = _tree(7)
    proof = consistency_proof(HASHER, 3, 7, tiles)
    fresh = Freshness(NOW, DAY)
    result = verify_checkpoints(old, new, proof, [], HASHER, policy, freshness=fresh)
    assert (result.old.size, result.new.size) == (3, 7)
    with pytest.raises(StaleCosignatures):
        verify_checkpoints(new, old, [], [], HASHER, policy, freshness=fresh)
    with pytest.raises(StaleCosignatures):
        open_checkpoint(old, [], policy, freshness=fresh)


# -- origins -----------------------------------------------------------------------------------
def test_key_names_cover_their_origin_and_the_origins_below_it() -> None:
    assert key_covers_origin(BASE, BASE)
    assert key_covers_origin(BASE, ORIGIN)
    assert not key_covers_origin(BASE, "pins.examples/audit.events/0")  # no "/" boundary
    assert not key_covers_origin(BASE, "other.example/audit.events/0")
    assert not key_covers_origin(ORIGIN, BASE)


def test_a_policy_log_key_signs_only_the_origins_its_name_covers() -> None:
    policy = parse_policy(_policy("none"))
    assert policy.verify(_note(2)).checkpoint.origin == ORIGIN
    assert policy.verify(_note(2, OTHER_ORIGIN)).checkpoint.origin == OTHER_ORIGIN
    # The same key signing a checkpoint of an origin outside its name fails closed.
    with pytest.raises(OriginMismatch, match="signs only its own name"):
        policy.verify(_note(2, "elsewhere.example/log"))
    # Given again with --key, a policy's key stays pinned by name...
    with pytest.raises(OriginMismatch):
        policy.verify(_note(2, "elsewhere.example/log"), [LOG.verifier])
    # ...while a key the caller adds outside the policy is the caller's own pin.
    outsider = NoteSigner.generate("outsider")
    assert policy.verify(_note(2, "elsewhere.example/log", outsider), [outsider.verifier])
    # The explicit origin pin applies whatever signed it.
    with pytest.raises(OriginMismatch, match="expected"):
        policy.verify(_note(2), origin=OTHER_ORIGIN)
    with pytest.raises(OriginMismatch):
        open_checkpoint(_note(2), [LOG.verifier], origin=OTHER_ORIGIN)
    assert open_checkpoint(_note(2), [LOG.verifier], origin=ORIGIN).size == 2


def test_consistency_with_a_pinned_origin() -> None:
    _, tiles = _tree(7)
    proof = consistency_proof(HASHER, 3, 7, tiles)
    verify_checkpoints(_note(3), _note(7), proof, [LOG.verifier], HASHER, origin=ORIGIN)
    with pytest.raises(OriginMismatch):
        verify_checkpoints(_note(3), _note(7), proof, [LOG.verifier], HASHER, origin=OTHER_ORIGIN)


# -- the command line --------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditlog.cli", *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def _receipt_files(tmp_path: Path, note: str, index: int = 4) -> list[str]:
    _, tiles = _tree(9)
    proof = inclusion_proof(HASHER, index, 9, tiles)
    (tmp_path / "r.tlog-proof").write_text(Receipt(index, tuple(proof), note).to_text())
    (tmp_path / "env.json").write_text(json.dumps(ENVELOPES[index].to_dict()))
    (tmp_path / "log.vkey").write_text(LOG.vkey() + "\n")
    return [str(tmp_path / "r.tlog-proof"), "--entry", str(tmp_path / "env.json")]


def test_verify_receipt_origin_pin(tmp_path: Path) -> None:
    receipt = _receipt_files(tmp_path, _note(9))
    key = ["--key", str(tmp_path / "log.vkey")]
    ok = _cli("verify", "receipt", *receipt, *key, "--origin", ORIGIN)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "note: the origin was not pinned" not in ok.stderr
    unpinned = _cli("verify", "receipt", *receipt, *key)
    assert unpinned.returncode == 0 and "the origin was not pinned" in unpinned.stderr
    wrong = _cli("verify", "receipt", *receipt, *key, "--origin", OTHER_ORIGIN)
    assert wrong.returncode == 1
    assert "FAILED: OriginMismatch" in wrong.stdout and OTHER_ORIGIN in wrong.stdout


def test_verify_receipt_policy_pins_and_freshness(tmp_path: Path) -> None:
    receipt = _receipt_files(tmp_path, _note(9, cosigned={W1: NOW, W2: NOW}))
    (tmp_path / "policy").write_text(_policy("both"))
    policy = ["--policy", str(tmp_path / "policy")]
    assert _cli("verify", "receipt", *receipt, *policy).returncode == 0
    # NOW is a fixed past time, so with a one-day bound against the real clock it is stale.
    old = _cli("verify", "receipt", *receipt, *policy, "--max-cosignature-age", str(DAY))
    assert old.returncode == 1, old.stdout + old.stderr
    assert "StaleCosignatures" in old.stdout
    # A bound needs witnesses to bound; a negative one is no bound.
    key = ["--key", str(tmp_path / "log.vkey")]
    usage = _cli("verify", "receipt", *receipt, *key, "--max-cosignature-age", "60")
    assert usage.returncode == 2 and "give --policy" in usage.stderr
    negative = _cli("verify", "receipt", *receipt, *policy, "--max-cosignature-age", "-1")
    assert negative.returncode == 2
    # A policy whose log key does not cover the receipt's origin fails closed.
    elsewhere = _note(9, "elsewhere.example/log", cosigned={W1: NOW, W2: NOW})
    foreign = _receipt_files(tmp_path, elsewhere)
    pinned = _cli("verify", "receipt", *foreign, *policy)
    assert pinned.returncode == 1 and "OriginMismatch" in pinned.stdout
