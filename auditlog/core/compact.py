"""Compact ranges: a tree's right edge as the roots of its maximal perfect subtrees.

A tree of size ``s`` is fully described, for appending and for its root, by one perfect-subtree
root per set bit of ``s`` (3 roots for 200 = 0b11001000), largest and leftmost first. The root of
the tree is their right-to-left fold, ``H(r0, H(r1, ... H(r[k-2], r[k-1])))``, which is exactly
RFC 6962's MTH because MTH splits at the largest power of two below the size.

With tiles, the right edge lives in the partial tiles: the roots of height ``8*L .. 8*L+7`` are
the perfect subtrees of the partial tile at level ``L``, so a range is rebuilt from at most one
tile per level (:meth:`CompactRange.from_tiles`) without touching the rest of the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from auditlog.core.errors import TileError
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.tiles import TileID, tiles_for_size

__all__ = ["CompactRange", "fold_roots", "perfect_roots", "subtree_root"]


def subtree_root(hasher: LogHasher, hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree over ``hashes`` (a power-of-two count of same-height nodes)."""
    level = list(hashes)
    if not level or len(level) & (len(level) - 1):
        raise ValueError(f"a perfect subtree needs a power-of-two node count, not {len(level)}")
    while len(level) > 1:
        level = hasher.hash_level(level)
    return level[0]


def perfect_roots(hasher: LogHasher, hashes: Sequence[bytes]) -> list[bytes]:
    """The compact range of a run of same-height nodes that starts on a 2^k boundary ≥ its length.

    The run is split by the binary digits of its length, largest first (how a partial tile's
    hashes decompose).
    """
    out: list[bytes] = []
    start = 0
    remaining = len(hashes)
    while remaining:
        chunk = 1 << (remaining.bit_length() - 1)
        out.append(subtree_root(hasher, hashes[start : start + chunk]))
        start += chunk
        remaining -= chunk
    return out


def fold_roots(hasher: LogHasher, roots: Sequence[bytes]) -> bytes:
    """The tree hash of consecutive perfect subtrees given largest first; empty_root if none."""
    if not roots:
        return hasher.empty_root()
    children = hasher.hash_children
    acc = roots[-1]
    for node in reversed(roots[:-1]):
        acc = children(node, acc)
    return acc


@dataclass(slots=True)
class CompactRange:
    """The compact range ``[0, size)``: one perfect-subtree root per set bit of ``size``."""

    hasher: LogHasher
    size: int = 0
    roots: list[bytes] = field(default_factory=list)

    @classmethod
    def from_tiles(
        cls, hasher: LogHasher, size: int, tiles: Mapping[TileID, bytes]
    ) -> CompactRange:
        """Rebuild the range for ``size`` from the partial tiles of that size.

        ``tiles`` may hold wider (later) versions of those tiles; only the prefix of the width
        the size implies is read. TileError when a needed tile is missing or too narrow.
        """
        roots: list[bytes] = []
        for tile, width in reversed(tiles_for_size(size)):
            data = tiles.get(tile)
            if data is None or len(data) < width * HASH_SIZE:
                have = "missing" if data is None else f"{len(data) // HASH_SIZE} hashes wide"
                raise TileError(f"tile {tile} is {have}, size {size} needs width {width}")
            hashes = [data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(width)]
            roots.extend(perfect_roots(hasher, hashes))
        return cls(hasher, size, roots)

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash, merging equal-height subtrees (one merge per trailing 1 bit)."""
        roots = self.roots
        roots.append(leaf_hash)
        merges = self.size
        self.size += 1
        children = self.hasher.hash_children
        while merges & 1:
            right = roots.pop()
            roots[-1] = children(roots[-1], right)
            merges >>= 1

    def root(self) -> bytes:
        """The Merkle tree hash of ``[0, size)``."""
        return fold_roots(self.hasher, self.roots)
