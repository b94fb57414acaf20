"""integrate(), tile-based proofs and verification, checked against the RFC reference.

Every (index, size) and (size1, size2) up to 256 is checked for all three hash schemes, with
tiles produced by integrate() under several batch splits, both at exactly the width each size
implies and at the (wider) final width, since stored partial tiles grow in place.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditlog.core.compact import CompactRange
from auditlog.core.errors import MalformedProof, ProofError, RootMismatch, TileError
from auditlog.core.hashing import HASH_SCHEMES, LogHasher, get_hasher
from auditlog.core.integrate import integrate, tiles_to_fetch
from auditlog.core.proof import (
    Node,
    consistency_proof,
    consistency_tiles,
    inclusion_proof,
    inclusion_tiles,
    root_from_tiles,
    root_tiles,
    verify_consistency,
    verify_inclusion,
)
from auditlog.core.tiles import TileID
from tests.unit.rfc6962_reference import ReferenceTree

N = 256
Tiles = dict[TileID, bytes]


def leaves_for(hasher: LogHasher, count: int) -> list[bytes]:
    return [hasher.hash_leaf(i.to_bytes(4, "big")) for i in range(count)]


@dataclass
class BuiltLog:
    final: Tiles
    snapshots: dict[int, Tiles]  # size -> the whole store right after reaching that size
    roots: dict[int, bytes]


def build(hasher: LogHasher, leaves: Sequence[bytes], batches: Sequence[int]) -> BuiltLog:
    """Integrate ``leaves`` batch by batch, passing only the tiles integrate asks for."""
    store: Tiles = {}
    snapshots: dict[int, Tiles] = {0: {}}
    roots = {0: hasher.empty_root()}
    size = 0
    for count in batches:
        edge = {tile: store[tile] for tile in tiles_to_fetch(size)}
        result = integrate(hasher, size, edge, leaves[size : size + count])
        assert result.size == size + count
        store.update(result.tiles)
        size = result.size
        snapshots[size] = dict(store)
        roots[size] = result.root
    assert size == len(leaves)
    return BuiltLog(store, snapshots, roots)


def splits(total: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    rand: list[int] = []
    while sum(rand) < total:
        rand.append(min(rng.choice([0, 1, 2, 3, 7, 31, 100, 255, 256, 257]), total - sum(rand)))
    return {"ones": [1] * total, "random": rand, "one-batch": [total]}


@pytest.fixture(scope="module", params=HASH_SCHEMES)
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Fixture:
    hasher: LogHasher
    leaves: list[bytes]
    ref: ReferenceTree
    log: BuiltLog  # built one leaf at a time: a snapshot at every size


@pytest.fixture(scope="module")
def small(scheme: str) -> Fixture:
    hasher = get_hasher(scheme)
    leaves = leaves_for(hasher, N)
    ref = ReferenceTree(hasher, leaves)
    logs = {name: build(hasher, leaves, b) for name, b in splits(N, seed=len(scheme)).items()}
    for name, log in logs.items():
        assert log.final == logs["ones"].final, name
        for size, root in log.roots.items():
            assert root == ref.root(size), (name, size)
    return Fixture(hasher, leaves, ref, logs["ones"])


def test_tile_contents_match_the_spec_definition(small: Fixture) -> None:
    # Tile n at level l holds MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l]).
    for size, tiles in small.log.snapshots.items():
        for tile, data in tiles.items():
            span = 256**tile.level
            width = len(data) // 32
            assert width == (min(size // span - tile.index * 256, 256))
            for i in range(width):
                lo = (tile.index * 256 + i) * span
                assert data[i * 32 : (i + 1) * 32] == small.ref.mth(lo, lo + span)


def test_every_inclusion_proof_up_to_256(small: Fixture) -> None:
    hasher, ref = small.hasher, small.ref
    for size in range(1, N + 1):
        exact = small.log.snapshots[size]
        root = ref.root(size)
        assert root_from_tiles(hasher, size, exact) == root
        assert root_from_tiles(hasher, size, small.log.final) == root
        exact_cache: dict[Node, bytes] = {}
        wide_cache: dict[Node, bytes] = {}
        for index in range(size):
            expected = ref.inclusion(index, size)
            planned = {t: exact[t] for t in inclusion_tiles(index, size)}
            assert inclusion_proof(hasher, index, size, planned, exact_cache) == expected
            assert inclusion_proof(hasher, index, size, small.log.final, wide_cache) == expected
            verify_inclusion(hasher, index, size, small.leaves[index], expected, root)


def test_every_consistency_proof_up_to_256(small: Fixture) -> None:
    hasher, ref = small.hasher, small.ref
    for size2 in range(0, N + 1):
        exact = small.log.snapshots[size2]
        cache: dict[Node, bytes] = {}
        for size1 in range(0, size2 + 1):
            expected = ref.consistency(size1, size2)
            planned = {t: exact[t] for t in consistency_tiles(size1, size2)}
            assert consistency_proof(hasher, size1, size2, planned, cache) == expected
            verify_consistency(hasher, size1, size2, ref.root(size1), ref.root(size2), expected)


def test_proofs_without_a_cache_agree(small: Fixture) -> None:
    hasher, ref, final = small.hasher, small.ref, small.log.final
    for size in range(1, N + 1, 3):
        for index in {0, size // 3, size // 2, size - 1}:
            assert inclusion_proof(hasher, index, size, final) == ref.inclusion(index, size)
        for size1 in {0, 1, size // 2, size - 1, size}:
            assert consistency_proof(hasher, size1, size, final) == ref.consistency(size1, size)


def test_root_tiles_plan_suffices(small: Fixture) -> None:
    for size in range(N + 1):
        exact = small.log.snapshots[size]
        planned = {t: exact[t] for t in root_tiles(size)}
        assert root_from_tiles(small.hasher, size, planned) == small.ref.root(size)


def test_compact_range_append_matches_reference(small: Fixture) -> None:
    cr = CompactRange(small.hasher)
    assert cr.root() == small.hasher.empty_root()
    for size, leaf in enumerate(small.leaves, start=1):
        cr.append(leaf)
        assert cr.root() == small.ref.root(size)
        assert len(cr.roots) == size.bit_count()


# -- larger, multi-level trees --------------------------------------------------------------

BIG = 70_000  # the spec's example size: tiles at levels 0, 1 and 2


@pytest.fixture(scope="module")
def big() -> tuple[LogHasher, list[bytes], ReferenceTree, BuiltLog]:
    hasher = get_hasher("rfc6962-sha256")
    leaves = leaves_for(hasher, BIG)
    rng = random.Random(7)
    batches: list[int] = []
    while sum(batches) < BIG:
        batches.append(min(rng.randint(1, 3000), BIG - sum(batches)))
    return hasher, leaves, ReferenceTree(hasher, leaves), build(hasher, leaves, batches)


def test_multi_level_roots_and_tiles(
    big: tuple[LogHasher, list[bytes], ReferenceTree, BuiltLog],
) -> None:
    hasher, leaves, ref, log = big
    cr = CompactRange(hasher)
    for size, leaf in enumerate(leaves, start=1):
        cr.append(leaf)
        if size in log.roots:
            assert log.roots[size] == cr.root()
    assert log.roots[BIG] == ref.root(BIG)
    widths = {tile: len(data) // 32 for tile, data in log.final.items()}
    assert widths[TileID(0, 273)] == 112
    assert widths[TileID(1, 1)] == 17
    assert widths[TileID(2, 0)] == 1
    assert sum(1 for t, w in widths.items() if t.level == 0 and w == 256) == 273


def test_multi_level_proofs(big: tuple[LogHasher, list[bytes], ReferenceTree, BuiltLog]) -> None:
    hasher, leaves, ref, log = big
    rng = random.Random(11)
    sizes = [255, 256, 257, 65_535, 65_536, 65_537, BIG, *rng.sample(range(1, BIG + 1), 40)]
    for size in sizes:
        root = ref.root(size)
        assert root_from_tiles(hasher, size, log.final) == root
        for index in {0, size - 1, size // 2, rng.randrange(size)}:
            proof = inclusion_proof(hasher, index, size, log.final)
            assert proof == ref.inclusion(index, size)
            assert len(inclusion_tiles(index, size)) <= 6
            verify_inclusion(hasher, index, size, leaves[index], proof, root)
        for size1 in {0, 1, size - 1, size // 2, rng.randint(0, size)}:
            proof = consistency_proof(hasher, size1, size, log.final)
            assert proof == ref.consistency(size1, size)
            verify_consistency(hasher, size1, size, ref.root(size1), root, proof)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 600), min_size=1, max_size=6))
def test_any_batch_split_gives_the_same_tiles(batches: list[int]) -> None:
    hasher = get_hasher("rfc6962-sha256")
    leaves = leaves_for(hasher, sum(batches))
    one = build(hasher, leaves, [len(leaves)])
    many = build(hasher, leaves, batches)
    assert many.final == one.final
    assert many.roots[len(leaves)] == one.roots[len(leaves)]


# -- integrate's contract about edge tiles --------------------------------------------------


def test_integrate_needs_exact_edge_tiles() -> None:
    hasher = get_hasher("rfc6962-sha256")
    leaves = leaves_for(hasher, 300)
    log = build(hasher, leaves, [300])
    assert tiles_to_fetch(300) == [TileID(0, 1), TileID(1, 0)]
    with pytest.raises(TileError):
        integrate(hasher, 300, {TileID(0, 1): log.final[TileID(0, 1)]}, leaves[:1])
    wider = build(hasher, leaves_for(hasher, 301), [301]).final
    with pytest.raises(TileError):
        integrate(hasher, 300, wider, leaves[:1])
    with pytest.raises(MalformedProof):
        integrate(hasher, 300, log.final, [b"short"])
    empty = integrate(hasher, 300, log.final, [])
    assert (empty.size, empty.root, empty.tiles) == (300, log.roots[300], {})


def test_integrate_leaves_no_garbage_for_the_cyclic_collector() -> None:
    # The sealer integrates every batch: a reference cycle per call kept each seal's tiles
    # alive until a collection freed thousands of them at once, pausing the sealer.
    hasher = get_hasher("rfc6962-sha256")
    leaves = leaves_for(hasher, 70_000)
    log = build(hasher, leaves[:65_000], [65_000])
    gc.collect()
    gc.disable()
    try:
        result = integrate(hasher, 65_000, log.final, leaves[65_000:])
        assert len(result.tiles) > 2  # filled tiles at two levels, and the partial ones
        del result
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_proofs_need_their_tiles() -> None:
    hasher = get_hasher("rfc6962-sha256")
    log = build(hasher, leaves_for(hasher, 100), [100])
    with pytest.raises(TileError):
        inclusion_proof(hasher, 5, 100, {})
    narrow = build(hasher, leaves_for(hasher, 50), [50]).final
    with pytest.raises(TileError):
        inclusion_proof(hasher, 5, 100, narrow)
    with pytest.raises(TileError):
        root_from_tiles(hasher, 100, narrow)
    assert inclusion_proof(hasher, 5, 50, log.final) == inclusion_proof(hasher, 5, 50, narrow)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (5, 5), (-1, 3), (0, 2**63)])
def test_bad_inclusion_coordinates(index: int, size: int) -> None:
    with pytest.raises(MalformedProof):
        inclusion_tiles(index, size)


@pytest.mark.parametrize(("size1", "size2"), [(5, 4), (-1, 3), (0, -1)])
def test_bad_consistency_coordinates(size1: int, size2: int) -> None:
    with pytest.raises(MalformedProof):
        consistency_tiles(size1, size2)


# -- mutated proofs must fail ---------------------------------------------------------------


def flip(h: bytes, bit: int) -> bytes:
    return h[: bit // 8] + bytes([h[bit // 8] ^ (1 << (bit % 8))]) + h[bit // 8 + 1 :]


def mutations(proof: list[bytes]) -> list[tuple[str, list[bytes]]]:
    out: list[tuple[str, list[bytes]]] = []
    for i in range(len(proof)):
        out += [
            (f"flip-bit@{i}", [*proof[:i], flip(proof[i], i * 7 % 256), *proof[i + 1 :]]),
            (f"drop@{i}", proof[:i] + proof[i + 1 :]),
            (f"insert@{i}", [*proof[:i], proof[i], *proof[i:]]),
            (f"truncated-hash@{i}", [*proof[:i], proof[i][:31], *proof[i + 1 :]]),
        ]
    out += [
        (f"swap@{i}", [*proof[:i], proof[i + 1], proof[i], *proof[i + 2 :]])
        for i in range(len(proof) - 1)
    ]
    out.append(("append-zero", [*proof, bytes(32)]))
    out.append(("prepend-zero", [bytes(32), *proof]))
    return out


def rejects(check: Callable[..., None], *args: object) -> bool:
    try:
        check(*args)
    except ProofError:
        return True
    return False


def test_mutated_inclusion_proofs_fail(small: Fixture) -> None:
    hasher, ref, leaves = small.hasher, small.ref, small.leaves
    for size in [*range(1, 40), 63, 64, 65, 127, 128, 129, 200, 255, 256]:
        root = ref.root(size)
        for index in sorted({0, 1 % size, size // 2, size - 1}):
            proof = ref.inclusion(index, size)
            leaf = leaves[index]
            cases: list[tuple[str, tuple[int, int, bytes, list[bytes], bytes]]] = [
                (name, (index, size, leaf, bad, root)) for name, bad in mutations(proof)
            ]
            cases += [
                ("wrong-leaf", (index, size, flip(leaf, 3), proof, root)),
                ("wrong-root", (index, size, leaf, proof, flip(root, 0))),
                ("size*2", (index, size * 2, leaf, proof, root)),
                ("size/2", (index, size // 2, leaf, proof, root)),
                ("index+size", (index + size, size, leaf, proof, root)),
            ]
            cases += [
                (f"index={other}", (other, size, leaf, proof, root))
                for other in {index - 1, index + 1, index ^ 1, index ^ 2}
                if 0 <= other < size and other != index
            ]
            for name, args in cases:
                assert rejects(verify_inclusion, hasher, *args), (size, index, name)


def test_mutated_consistency_proofs_fail(small: Fixture) -> None:
    hasher, ref = small.hasher, small.ref
    for size2 in [*range(1, 34), 64, 65, 100, 128, 129, 255, 256]:
        for size1 in sorted({1, size2 // 3, size2 // 2, size2 - 1} - {0}):
            if not 0 < size1 < size2:
                continue
            r1, r2 = ref.root(size1), ref.root(size2)
            proof = ref.consistency(size1, size2)
            cases: list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]] = [
                (name, (size1, size2, r1, r2, bad)) for name, bad in mutations(proof)
            ]
            cases += [
                ("old-root", (size1, size2, flip(r1, 9), r2, proof)),
                ("new-root", (size1, size2, r1, flip(r2, 9), proof)),
                ("swapped-roots", (size1, size2, r2, r1, proof)),
                ("empty", (size1, size2, r1, r2, [])),
                ("reversed-sizes", (size2, size1, r2, r1, proof)),
            ]
            for name, args in cases:
                assert rejects(verify_consistency, hasher, *args), (size1, size2, name)


def test_trivial_consistency_cases() -> None:
    hasher = get_hasher("rfc6962-sha256")
    empty, other = hasher.empty_root(), hasher.hash_leaf(b"x")
    verify_consistency(hasher, 0, 0, empty, empty, [])
    verify_consistency(hasher, 0, 5, empty, other, [])
    verify_consistency(hasher, 5, 5, other, other, [])
    with pytest.raises(RootMismatch):
        verify_consistency(hasher, 0, 5, other, other, [])
    with pytest.raises(RootMismatch):
        verify_consistency(hasher, 5, 5, other, empty, [])
    with pytest.raises(MalformedProof):
        verify_consistency(hasher, 5, 5, other, other, [other])
    with pytest.raises(MalformedProof):
        verify_consistency(hasher, 0, 5, empty, other, [other])


def test_root_mismatch_carries_both_roots() -> None:
    hasher = get_hasher("rfc6962-sha256")
    leaf = hasher.hash_leaf(b"x")
    with pytest.raises(RootMismatch) as info:
        verify_inclusion(hasher, 0, 1, leaf, [], bytes(32))
    assert info.value.expected == bytes(32)
    assert info.value.calculated == leaf


@pytest.mark.parametrize("scheme", HASH_SCHEMES)
def test_hash_level_is_hash_children_over_pairs(scheme: str) -> None:
    hasher = get_hasher(scheme)
    nodes = [bytes([i]) * 32 for i in range(16)]
    expected = [hasher.hash_children(nodes[i], nodes[i + 1]) for i in range(0, 16, 2)]
    assert hasher.hash_level(nodes) == expected
    assert hasher.hash_level([]) == []
    with pytest.raises(ValueError, match="zip"):
        hasher.hash_level(nodes[:3])
