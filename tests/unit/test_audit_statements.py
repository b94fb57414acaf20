"""The auditor with a log's signed statements: what a pruned bound and an erasure record
account for, and what they never excuse (pure, in memory)."""

from __future__ import annotations

import hashlib

from auditlog.core.audit import (
    AuditedLog,
    LogAuditor,
    StoredCheckpoint,
    StoredEvent,
    StoredHead,
    StoredStatements,
)
from auditlog.core.checkpoint import Checkpoint
from auditlog.core.entry import leaf_hash, log_entry
from auditlog.core.envelope import Envelope
from auditlog.core.hashing import get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.log_statements import (
    ErasureRecord,
    PrunedBound,
    erased_entry,
    sign_statement,
)
from auditlog.core.note import NoteSigner, sign_note
from auditlog.core.tiles import TILE_WIDTH, TileID, encode_bundle

ORIGIN = "example.test/audit.events/0"
SIZE = 600
HASHER = get_hasher("rfc6962-sha256")
SIGNER = NoteSigner.generate("example.test")
T = "2026-01-01T00:00:00Z"

ENVELOPES = [
    Envelope({"message": f"event {i}"}, f"2025-01-01T00:00:00.{i:06d}Z").canonical
    for i in range(SIZE)
]
LEAVES = [leaf_hash(HASHER, e) for e in ENVELOPES]


def _grow() -> tuple[dict[TileID, bytes], dict[int, bytes]]:
    tiles: dict[TileID, bytes] = {}
    roots: dict[int, bytes] = {}
    size = 0
    for lo in range(0, SIZE, 100):
        result = integrate(HASHER, size, {t: tiles[t] for t in tiles_to_fetch(size)},
                           LEAVES[lo : lo + 100])  # fmt: skip
        tiles.update(result.tiles)
        size = result.size
        roots[size] = result.root
    return tiles, roots


TILES, ROOTS = _grow()
NOTES = {
    n: sign_note(Checkpoint(ORIGIN, n, r).to_text(), [SIGNER.named(ORIGIN)])
    for n, r in ROOTS.items()
}


def _pruned(below: int, size: int = SIZE, time: str = T, signer: NoteSigner = SIGNER) -> str:
    return sign_statement(PrunedBound(ORIGIN, below, size, ROOTS[size], time), signer)


def _erasure(index: int, leaf: bytes | None = None) -> str:
    digest = hashlib.sha256(ENVELOPES[index]).digest()
    record = ErasureRecord(ORIGIN, index, digest, leaf or LEAVES[index], T, "request 7")
    return sign_statement(record, SIGNER)


def _audit(
    absent: set[int],
    statements: StoredStatements,
    *,
    bundles_below: int = 0,
    erased_in_bundle: set[int] | None = None,
) -> AuditedLog:
    head = StoredHead("audit.events-0", ORIGIN, "rfc6962-sha256", SIZE, ROOTS[SIZE], NOTES[SIZE])
    history = [StoredCheckpoint(NOTES[n], n, ROOTS[n]) for n in sorted(NOTES)]
    auditor = LogAuditor(head, HASHER, [SIGNER.verifier], history, statements=statements)
    for chunk in range(-(-SIZE // TILE_WIDTH)):
        lo, hi = chunk * TILE_WIDTH, min(SIZE, (chunk + 1) * TILE_WIDTH)
        rows = [
            StoredEvent(i, hashlib.sha256(ENVELOPES[i]).digest(), ENVELOPES[i])
            for i in range(lo, hi)
            if i not in absent
        ]
        entries = [
            erased_entry(LEAVES[i]) if i in (erased_in_bundle or set()) else log_entry(ENVELOPES[i])
            for i in range(lo, hi)
        ]
        bundle = None if hi <= bundles_below else encode_bundle(entries)
        auditor.add_chunk(chunk, rows, TILES[TileID(0, chunk)], bundle)
        while wanted := auditor.wanted_tiles():
            auditor.add_tiles({t: TILES.get(t) for t in wanted})
    auditor.end_of_entries()
    while wanted := auditor.wanted_tiles():
        auditor.add_tiles({t: TILES.get(t) for t in wanted})
    return auditor.finish()


def _kinds(result: AuditedLog) -> list[tuple[str, int | None]]:
    return [(f.kind, f.index) for f in result.findings]


def test_absent_entries_below_the_bound_are_pruned() -> None:
    result = _audit(set(range(300)), StoredStatements([_pruned(300)]), bundles_below=256)
    assert _kinds(result) == []
    assert result.pruned_below == 300


def test_absent_entries_above_the_bound_are_damage() -> None:
    result = _audit(set(range(300)), StoredStatements([_pruned(200)]))
    assert _kinds(result) == [("missing-entry", 200)]
    # A bundle is deleted only when its whole chunk lies below the bound.
    result = _audit(set(range(300)), StoredStatements([_pruned(200)]), bundles_below=256)
    assert ("bundle-mismatch", 0) in _kinds(result)
    # Without any statement, the whole run is missing, and the missing bundle is named too.
    result = _audit(set(range(300)), StoredStatements(), bundles_below=256)
    assert ("missing-entry", 0) in _kinds(result) and ("bundle-mismatch", 0) in _kinds(result)


def test_a_bound_going_back_is_damage() -> None:
    back = StoredStatements([_pruned(300, 500), _pruned(100, SIZE)])
    assert ("pruned-bound-backwards", 100) in _kinds(_audit(set(), back))
    same_checkpoint_later = StoredStatements(
        [_pruned(300), _pruned(100, time="2026-02-01T00:00:00Z")]
    )
    assert ("pruned-bound-backwards", 100) in _kinds(_audit(set(), same_checkpoint_later))
    remembered = StoredStatements([_pruned(100)], remembered_pruned=_pruned(300))
    assert ("pruned-bound-backwards", 100) in _kinds(_audit(set(), remembered))
    assert _kinds(_audit(set(), StoredStatements([_pruned(100, 500), _pruned(300)]))) == []


def test_a_statement_that_does_not_verify_excuses_nothing() -> None:
    other = NoteSigner.generate("example.test")
    result = _audit({5}, StoredStatements([_pruned(300, signer=other)]))
    assert _kinds(result) == [("pruned-statement-invalid", None), ("missing-entry", 5)]
    forged_root = sign_statement(PrunedBound(ORIGIN, 300, 500, ROOTS[SIZE], T), SIGNER)
    result = _audit(set(), StoredStatements([forged_root]))
    assert ("pruned-statement-invalid", 500) in _kinds(result)


def test_an_erasure_with_its_record_is_listed_not_damage() -> None:
    result = _audit({417}, StoredStatements([], [_erasure(417)]), erased_in_bundle={417})
    assert _kinds(result) == []
    assert [(e.index, e.reason) for e in result.erased] == [(417, "request 7")]


def test_an_erasure_naming_another_leaf_is_damage() -> None:
    result = _audit({417}, StoredStatements([], [_erasure(417, leaf=LEAVES[418])]))
    assert ("erasure-mismatch", 417) in _kinds(result)
    assert result.erased == ()


def test_bundles_mode_reads_the_placeholders() -> None:
    head = StoredHead("audit.events-0", ORIGIN, "rfc6962-sha256", SIZE, None, NOTES[SIZE])
    auditor = LogAuditor(head, HASHER, [SIGNER.verifier], [], entries_from="bundles",
                         statements=StoredStatements([_pruned(256)], [_erasure(300)]))  # fmt: skip
    for chunk in range(3):
        lo, hi = chunk * TILE_WIDTH, min(SIZE, (chunk + 1) * TILE_WIDTH)
        entries = [erased_entry(LEAVES[i]) if i == 300 else log_entry(ENVELOPES[i])
                   for i in range(lo, hi)]  # fmt: skip
        bundle = None if chunk == 0 else encode_bundle(entries)
        auditor.add_chunk(chunk, [], TILES[TileID(0, chunk)], bundle)
        while wanted := auditor.wanted_tiles():
            auditor.add_tiles({t: TILES.get(t) for t in wanted})
    auditor.end_of_entries()
    while wanted := auditor.wanted_tiles():
        auditor.add_tiles({t: TILES.get(t) for t in wanted})
    result = auditor.finish()
    assert _kinds(result) == []
    assert [e.index for e in result.erased] == [300]
