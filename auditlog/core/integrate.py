"""Integrating a batch of leaf hashes into a tiled log, without I/O.

The caller (the sealer) reads the right-edge tiles named by :func:`tiles_to_fetch`, passes their
contents in, and gets back every tile the batch changed plus the new root, all of which it writes
in the same transaction as the batch and the signed checkpoint. This is tessera's integrate step
with storage passed in as data: the cost is O(batch + log n) hashes whatever the log's size,
because only the partial tile at each level is ever read or rewritten, plus the full tiles the
batch completes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from auditlog.core.compact import fold_roots, perfect_roots, subtree_root
from auditlog.core.errors import MalformedProof, TileError
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.tiles import TILE_WIDTH, TileID, split_hashes, tiles_for_size

__all__ = ["Integration", "integrate", "tiles_to_fetch"]


def tiles_to_fetch(from_size: int) -> list[TileID]:
    """The partial (right-edge) tiles of a tree of ``from_size``: what integrate needs to extend it.

    Bottom level first; empty for a size that is a multiple of 256 at every level (such as 0).
    """
    if from_size < 0:
        raise MalformedProof(f"negative tree size {from_size}")
    return [tile for tile, _ in tiles_for_size(from_size)]


@dataclass(frozen=True, slots=True)
class Integration:
    """The result of integrating a batch.

    ``tiles`` maps every tile that changed (partial or newly full) to its complete new contents,
    the concatenated 32-byte hashes, ready to upsert under that key.
    """

    size: int
    root: bytes
    tiles: dict[TileID, bytes]


def integrate(
    hasher: LogHasher,
    from_size: int,
    edge_tiles: Mapping[TileID, bytes],
    leaf_hashes: Sequence[bytes],
) -> Integration:
    """Append ``leaf_hashes`` to a log of ``from_size`` leaves whose edge tiles are given.

    ``edge_tiles`` must hold each tile of :func:`tiles_to_fetch` at exactly the width
    ``from_size`` implies (other entries are ignored): a wider stored tile means the store is
    ahead of ``from_size``, and extending from there would overwrite sealed hashes, so that is a
    TileError, as is a missing tile.
    """
    if not set(map(len, leaf_hashes)) <= {HASH_SIZE}:
        bad = next(len(leaf) for leaf in leaf_hashes if len(leaf) != HASH_SIZE)
        raise MalformedProof(f"leaf hash of {bad} bytes, expected {HASH_SIZE}")

    # Per level: the index of the rightmost (partial or empty) tile and the hashes it holds.
    indexes: list[int] = []
    buffers: list[list[bytes]] = []
    for tile, width in tiles_for_size(from_size):
        data = edge_tiles.get(tile)
        if data is None or len(data) != width * HASH_SIZE:
            have = "missing" if data is None else f"{len(data) // HASH_SIZE} hashes wide"
            raise TileError(f"edge tile {tile} is {have}, size {from_size} needs width {width}")
    n = from_size
    level = 0
    while n > 0 or level == 0:
        index, width = divmod(n, TILE_WIDTH)
        indexes.append(index)
        buffers.append(split_hashes(edge_tiles[TileID(level, index)]) if width else [])
        n //= TILE_WIDTH
        level += 1

    changed: dict[TileID, bytes] = {}
    touched: set[int] = set()
    # Level by level, bottom up: fill the level's current tile; each time it fills up, emit it
    # and carry its root to the next level. A loop, not a recursive closure: a closure that
    # calls itself is a reference cycle, which kept every seal's tiles alive until the cyclic
    # collector came by and freed thousands of seals' worth at once (a pause of 50-100 ms).
    level, pending = 0, leaf_hashes
    while pending:
        if level == len(buffers):
            indexes.append(0)
            buffers.append([])
        buf = buffers[level]
        carried: list[bytes] = []
        pos = 0
        while pos < len(pending):
            take = pending[pos : pos + TILE_WIDTH - len(buf)]
            buf.extend(take)
            pos += len(take)
            touched.add(level)
            if len(buf) == TILE_WIDTH:
                changed[TileID(level, indexes[level])] = b"".join(buf)
                carried.append(subtree_root(hasher, buf))
                indexes[level] += 1
                buf.clear()
        pending = carried
        level += 1
    for level in touched:
        if buffers[level]:
            changed[TileID(level, indexes[level])] = b"".join(buffers[level])

    # The new root: the compact range of the final size, read off the partial tiles top-down.
    roots: list[bytes] = []
    for buf in reversed(buffers):
        roots.extend(perfect_roots(hasher, buf))
    return Integration(from_size + len(leaf_hashes), fold_roots(hasher, roots), changed)
