"""A log is born with a signed checkpoint of size 0 (sealer/store.py, load_head): the empty
tree's root and that checkpoint must verify everywhere a checkpoint is used, for every hash
scheme, and the auditor must neither complain about a newborn log nor excuse an emptied one."""

from __future__ import annotations

import hashlib

import pytest
from blake3 import blake3

from auditlog.core.audit import LogAuditor, StoredCheckpoint, StoredHead
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.consistency import verify_checkpoints
from auditlog.core.errors import RootMismatch
from auditlog.core.hashing import LogHasher, get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.note import NoteSigner, NoteVerifier, sign_note
from auditlog.core.proof import (
    consistency_proof,
    consistency_tiles,
    root_from_tiles,
    root_tiles,
    verify_consistency,
)
from auditlog.core.tiles import TileID, tiles_for_size

ORIGIN = "birth.test/audit.events/0"
SIGNER = NoteSigner.generate("birth.test")
VERIFIER = NoteVerifier.from_vkey(SIGNER.vkey())
EMPTY = {
    "rfc6962-sha256": hashlib.sha256(b"").digest(),  # RFC 6962 2.1: MTH({}) = SHA-256()
    "rfc6962-blake3": blake3(b"").digest(),
    "pangea-sha256": hashlib.sha256(b"").digest(),  # Pangea publishes no empty tree
}


def _note(size: int, root: bytes) -> str:
    return sign_note(Checkpoint(ORIGIN, size, root).to_text(), [SIGNER])


def _grown(hasher: LogHasher, n: int) -> tuple[bytes, dict[TileID, bytes]]:
    leaves = [hasher.hash_leaf(i.to_bytes(4, "big")) for i in range(n)]
    result = integrate(hasher, 0, {}, leaves)
    return result.root, dict(result.tiles)


@pytest.mark.parametrize("scheme", sorted(EMPTY))
def test_the_empty_tree_has_its_root_and_needs_no_tile(scheme: str) -> None:
    hasher = get_hasher(scheme)
    assert hasher.empty_root() == EMPTY[scheme]
    assert tiles_for_size(0) == [] and root_tiles(0) == [] and tiles_to_fetch(0) == []
    assert root_from_tiles(hasher, 0, {}) == EMPTY[scheme]
    assert consistency_tiles(0, 0) == []


@pytest.mark.parametrize("scheme", sorted(EMPTY))
@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 1000])
def test_every_later_checkpoint_is_consistent_with_the_birth_checkpoint(
    scheme: str, size: int
) -> None:
    hasher = get_hasher(scheme)
    root, tiles = _grown(hasher, size)
    assert root_from_tiles(hasher, size, tiles) == root
    proof = consistency_proof(hasher, 0, size, tiles)
    assert proof == []  # from the empty tree there is nothing to prove but its root
    verify_consistency(hasher, 0, size, EMPTY[scheme], root, proof)
    verified = verify_checkpoints(
        _note(0, EMPTY[scheme]), _note(size, root), proof, [VERIFIER], hasher
    )
    assert (verified.old.size, verified.new.size) == (0, size)
    with pytest.raises(RootMismatch):
        verify_consistency(hasher, 0, size, b"\x00" * 32, root, proof)


def _audit(scheme: str, head_size: int, head_root: bytes, history: list[tuple[int, bytes]]):  # type: ignore[no-untyped-def]
    notes = {size: _note(size, root) for size, root in history}
    head_note = notes.get(head_size)
    stored = [StoredCheckpoint(notes[size], size, root) for size, root in history]
    auditor = LogAuditor(
        StoredHead("audit.events-0", ORIGIN, scheme, head_size, head_root, head_note),
        get_hasher(scheme),
        [VERIFIER],
        stored,
    )
    auditor.end_of_entries()
    while wanted := auditor.wanted_tiles():
        auditor.add_tiles(dict.fromkeys(wanted))
    return auditor.finish()


@pytest.mark.parametrize("scheme", sorted(EMPTY))
def test_a_newborn_log_audits_clean(scheme: str) -> None:
    result = _audit(scheme, 0, EMPTY[scheme], [(0, EMPTY[scheme])])
    assert result.findings == ()
    assert (result.size, result.checkpoints) == (0, 1)
    assert result.head_note is not None


def test_a_log_without_any_checkpoint_is_still_damage() -> None:
    # Every log is born signed: one with no checkpoint at all lost it.
    result = _audit("rfc6962-sha256", 0, EMPTY["rfc6962-sha256"], [])
    assert {f.kind for f in result.findings} == {"no-verified-checkpoint"}


def test_a_birth_checkpoint_of_another_root_is_named() -> None:
    bogus = hashlib.sha256(b"not empty").digest()
    result = _audit("rfc6962-sha256", 0, bogus, [(0, bogus)])
    assert [(f.kind, f.index) for f in result.findings] == [("checkpoint-root-mismatch", 0)]
    assert "empty tree" in result.findings[0].detail


def test_an_emptied_log_is_caught_by_the_checkpoints_it_signed_before() -> None:
    # Rows, tiles and head reset to the birth checkpoint; the history still holds size 5.
    hasher = get_hasher("rfc6962-sha256")
    root, _ = _grown(hasher, 5)
    result = _audit("rfc6962-sha256", 0, EMPTY[hasher.name], [(0, EMPTY[hasher.name]), (5, root)])
    kinds = {f.kind for f in result.findings}
    assert "rollback" in kinds
