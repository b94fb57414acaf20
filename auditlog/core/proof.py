"""Inclusion and consistency proofs: plan from tiles, assemble, and verify (RFC 9162 §2.1.3-4).

Building a proof is split in two, as in transparency-dev/merkle: a *plan* (``*_tiles``) names
the tiles holding the needed hashes, the caller fetches them however it likes, and the
*assembly* (``inclusion_proof``, ``consistency_proof``, ``root_from_tiles``) computes the proof
from their contents. Tiles may be wider than the tree size asks for (stored partial tiles grow in
place): only prefixes are read, and those never change.

A proof is a list of subtree hashes. Each is the Merkle tree hash of a range of leaves; a range
is decomposed into perfect (aligned, power-of-two) subtrees, each of which is either a hash in a
tile (height a multiple of 8) or is rehashed from a power-of-two run inside one tile.

Verification uses the closed forms of transparency-dev/merkle (``proof/verify.go``), which check
the proof length exactly and never build a tree.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

from auditlog.core.compact import CompactRange, subtree_root
from auditlog.core.errors import MalformedProof, RootMismatch, TileError
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.tiles import TILE_HEIGHT, TileID, tiles_for_size

__all__ = [
    "Node",
    "Range",
    "consistency_proof",
    "consistency_ranges",
    "consistency_tiles",
    "descend",
    "inclusion_proof",
    "inclusion_ranges",
    "inclusion_tiles",
    "node_hash",
    "range_hash",
    "range_nodes",
    "root_from_inclusion_proof",
    "root_from_tiles",
    "root_tiles",
    "tiles_for_ranges",
    "verify_consistency",
    "verify_inclusion",
]

# A node is (height, index): the perfect subtree over leaves [index << height, (index+1) << height).
Node = tuple[int, int]
# A range is (lo, hi): the Merkle tree hash of leaves [lo, hi).
Range = tuple[int, int]

_MAX_SIZE = 1 << 63  # sizes are uint64 in every format we speak; 2**63 keeps int64 tools happy


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2): where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(lo: int, hi: int) -> list[Node]:
    """Decompose ``[lo, hi)`` into maximal aligned perfect subtrees, left to right."""
    nodes: list[Node] = []
    while lo < hi:
        # Largest power of two that divides lo (any, when lo == 0) and fits in what remains.
        height = (hi - lo).bit_length() - 1
        if lo:
            height = min(height, (lo & -lo).bit_length() - 1)
        nodes.append((height, lo >> height))
        lo += 1 << height
    return nodes


def _node_tile(node: Node) -> tuple[TileID, int, int]:
    """The tile holding a node's hashes: (tile, first position, count of hashes to rehash)."""
    height, index = node
    level, sub = divmod(height, TILE_HEIGHT)
    first = index << sub
    return TileID(level, first >> TILE_HEIGHT), first & 0xFF, 1 << sub


def node_hash(
    hasher: LogHasher,
    node: Node,
    tiles: Mapping[TileID, bytes],
    cache: MutableMapping[Node, bytes] | None = None,
) -> bytes:
    """The hash of perfect subtree ``node``, read from its tile (rehashed below tile height).

    ``cache``, if given, memoizes node hashes across calls. A perfect subtree's hash never
    changes once it exists, so one cache per log stays valid as the log grows (never share one
    between logs). Without it, a node of height ``8*L + k`` costs ``2**k - 1`` hashes.
    """
    if cache is not None:
        hit = cache.get(node)
        if hit is not None:
            return hit
    height, index = node
    if cache is not None and height % TILE_HEIGHT:
        # Recurse so that every intermediate node lands in the cache too.
        value = hasher.hash_children(
            node_hash(hasher, (height - 1, 2 * index), tiles, cache),
            node_hash(hasher, (height - 1, 2 * index + 1), tiles, cache),
        )
        cache[node] = value
        return value
    tile, first, count = _node_tile(node)
    data = tiles.get(tile)
    end = (first + count) * HASH_SIZE
    if data is None or len(data) < end:
        have = "missing" if data is None else f"{len(data) // HASH_SIZE} hashes wide"
        raise TileError(f"tile {tile} is {have}, needs {first + count}")
    if count == 1:
        value = bytes(data[first * HASH_SIZE : end])
    else:
        hashes = [data[i : i + HASH_SIZE] for i in range(first * HASH_SIZE, end, HASH_SIZE)]
        value = subtree_root(hasher, hashes)
    if cache is not None:
        cache[node] = value
    return value


def range_hash(
    hasher: LogHasher,
    lo: int,
    hi: int,
    tiles: Mapping[TileID, bytes],
    cache: MutableMapping[Node, bytes] | None = None,
) -> bytes:
    """MTH(D[lo:hi]) for a range that occurs in RFC 6962 recursion (lo aligned to its size)."""
    hashes = [node_hash(hasher, node, tiles, cache) for node in range_nodes(lo, hi)]
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = hasher.hash_children(left, acc)
    return acc


def tiles_for_ranges(ranges: Sequence[Range]) -> list[TileID]:
    """Plan: the tiles holding every perfect subtree the hashes of ``ranges`` are made of."""
    return sorted({_node_tile(node)[0] for lo, hi in ranges for node in range_nodes(lo, hi)})


def _check_size(size: int) -> None:
    if not 0 <= size < _MAX_SIZE:
        raise MalformedProof(f"tree size {size} out of range")


# Inclusion -----------------------------------------------------------------------------------


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose hashes form the inclusion proof of ``index``, leaf sibling first."""
    _check_size(size)
    if not 0 <= index < size:
        raise MalformedProof(f"index {index} is not below tree size {size}")
    return descend(index, size, 1)[0]


def descend(index: int, size: int, width: int) -> tuple[list[Range], Range]:
    """RFC 9162 PATH(m, D[0:size]) from the root towards leaf ``index``, stopped at the first
    subtree at most ``width`` leaves wide: the sibling ranges met on the way (bottom-up, as a
    proof lists them) and that subtree. Callers check the coordinates."""
    out: list[Range] = []
    lo, hi = 0, size
    while hi - lo > width:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out, (lo, hi)


def inclusion_tiles(index: int, size: int) -> list[TileID]:
    """Plan: the tiles whose contents :func:`inclusion_proof` needs."""
    return tiles_for_ranges(inclusion_ranges(index, size))


def inclusion_proof(
    hasher: LogHasher,
    index: int,
    size: int,
    tiles: Mapping[TileID, bytes],
    cache: MutableMapping[Node, bytes] | None = None,
) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size``, from tiles.

    ``cache``: see :func:`node_hash`.
    """
    ranges = inclusion_ranges(index, size)
    return [range_hash(hasher, lo, hi, tiles, cache) for lo, hi in ranges]


# Consistency ---------------------------------------------------------------------------------


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """The leaf ranges whose hashes form the consistency proof from ``size1`` to ``size2``."""
    _check_size(size2)
    if not 0 <= size1 <= size2:
        raise MalformedProof(f"sizes {size1} -> {size2}: need 0 <= size1 <= size2")
    if size1 in (0, size2):
        return []
    # RFC 9162 SUBPROOF(m, D[lo:hi], b): collected top-down, emitted bottom-up.
    outer: list[Range] = []
    lo, hi, complete = 0, size2, True
    while size1 != hi:
        k = _split(hi - lo)
        if size1 <= lo + k:
            outer.append((lo + k, hi))
            hi = lo + k
        else:
            outer.append((lo, lo + k))
            lo += k
            complete = False
    base: list[Range] = [] if complete else [(lo, hi)]
    return base + outer[::-1]


def consistency_tiles(size1: int, size2: int) -> list[TileID]:
    """Plan: the tiles whose contents :func:`consistency_proof` needs."""
    return tiles_for_ranges(consistency_ranges(size1, size2))


def consistency_proof(
    hasher: LogHasher,
    size1: int,
    size2: int,
    tiles: Mapping[TileID, bytes],
    cache: MutableMapping[Node, bytes] | None = None,
) -> list[bytes]:
    """The RFC 9162 consistency proof between two tree sizes, from tile contents of ``size2``.

    ``cache``: see :func:`node_hash`.
    """
    ranges = consistency_ranges(size1, size2)
    return [range_hash(hasher, lo, hi, tiles, cache) for lo, hi in ranges]


# Roots ---------------------------------------------------------------------------------------


def root_tiles(size: int) -> list[TileID]:
    """Plan: the tiles :func:`root_from_tiles` needs (the partial tiles of ``size``)."""
    _check_size(size)
    return [tile for tile, _ in tiles_for_size(size)]


def root_from_tiles(hasher: LogHasher, size: int, tiles: Mapping[TileID, bytes]) -> bytes:
    """The root hash of the tree of ``size`` leaves, from its partial tiles (or wider versions)."""
    _check_size(size)
    return CompactRange.from_tiles(hasher, size, tiles).root()


# Verification --------------------------------------------------------------------------------


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    if set(map(len, hashes)) <= {HASH_SIZE}:  # the common case, without a Python-level loop
        return
    for i, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise MalformedProof(f"{what}[{i}] is {len(h)} bytes, expected {HASH_SIZE}")


def _decompose(index: int, size: int) -> tuple[int, int]:
    # inner: levels where the path and the right edge of the tree differ; border: the rest.
    inner = (index ^ (size - 1)).bit_length()
    return inner, (index >> inner).bit_count()


def root_from_inclusion_proof(
    hasher: LogHasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof leads to; MalformedProof if its shape is wrong."""
    _check_size(size)
    if not 0 <= index < size:
        raise MalformedProof(f"index {index} is not below tree size {size}")
    _check_hashes("leaf hash", [leaf_hash])
    _check_hashes("proof", proof)
    inner, border = _decompose(index, size)
    if len(proof) != inner + border:
        raise MalformedProof(f"wrong proof size {len(proof)}, want {inner + border}")
    children = hasher.hash_children
    acc = leaf_hash
    for i in range(inner):
        acc = children(proof[i], acc) if (index >> i) & 1 else children(acc, proof[i])
    for i in range(inner, inner + border):
        acc = children(proof[i], acc)
    return acc


def verify_inclusion(
    hasher: LogHasher,
    index: int,
    size: int,
    leaf_hash: bytes,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Raises MalformedProof for a proof of the wrong shape, RootMismatch if it leads elsewhere.
    """
    calculated = root_from_inclusion_proof(hasher, index, size, leaf_hash, proof)
    if calculated != root:
        raise RootMismatch(root, calculated)


def _verify_trivial_consistency(
    hasher: LogHasher, sizes: tuple[int, int], roots: tuple[bytes, bytes], proof: Sequence[bytes]
) -> None:
    # Equal sizes, or growing from the empty tree: nothing to prove but the roots themselves.
    if proof:
        raise MalformedProof(f"this consistency proof must be empty, got {len(proof)} hashes")
    (size1, size2), (root1, root2) = sizes, roots
    if size1 == 0 and root1 != hasher.empty_root():
        raise RootMismatch(hasher.empty_root(), root1, "empty-tree root")
    if size1 == size2 and root1 != root2:
        raise RootMismatch(root1, root2, "equal-size root")


def verify_consistency(
    hasher: LogHasher,
    size1: int,
    size2: int,
    root1: bytes,
    root2: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the tree of ``size1`` with ``root1``.

    The empty tree is consistent with any tree, but only under the empty root. Raises
    MalformedProof for a proof of the wrong shape, RootMismatch if a root does not match.
    """
    _check_size(size2)
    if not 0 <= size1 <= size2:
        raise MalformedProof(f"sizes {size1} -> {size2}: need 0 <= size1 <= size2")
    _check_hashes("root1", [root1])
    _check_hashes("root2", [root2])
    _check_hashes("proof", proof)
    if size1 in (0, size2):
        _verify_trivial_consistency(hasher, (size1, size2), (root1, root2), proof)
        return
    if not proof:
        raise MalformedProof("empty consistency proof")

    inner, border = _decompose(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    # The proof starts with the hash of the subtree of size 2**shift that ends the old tree,
    # unless the old tree is that subtree, in which case the verifier already knows it.
    if size1 == 1 << shift:
        seed, rest = root1, proof
    else:
        seed, rest = proof[0], proof[1:]
    if len(rest) != inner + border:
        want = inner + border + (len(proof) - len(rest))
        raise MalformedProof(f"wrong proof size {len(proof)}, want {want}")

    children = hasher.hash_children
    mask = (size1 - 1) >> shift
    hash1 = hash2 = seed
    for i in range(inner):
        if (mask >> i) & 1:
            hash1 = children(rest[i], hash1)
            hash2 = children(rest[i], hash2)
        else:
            hash2 = children(hash2, rest[i])
    for i in range(inner, inner + border):
        hash1 = children(rest[i], hash1)
        hash2 = children(rest[i], hash2)
    if hash1 != root1:
        raise RootMismatch(root1, hash1, "old root")
    if hash2 != root2:
        raise RootMismatch(root2, hash2, "new root")
