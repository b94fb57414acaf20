"""The rebuilt account ``R``: the tree grown from the entries' leaves, one leaf at a time.

It keeps what bounded memory allows and the comparisons need: the compact range (for the root
at each signed size) and one partial tile per level. A full upper-level tile is handed back to
be compared with the stored one; level-0 tiles are compared chunk by chunk as the entries are
read, so they are only hashed into level 1 here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from auditlog.core.compact import CompactRange, subtree_root
from auditlog.core.hashing import LogHasher
from auditlog.core.tiles import TILE_WIDTH, TileID

__all__ = ["RebuiltTile", "RebuiltTree"]

RebuiltTile = tuple[TileID, list[bytes]]
_NONE: Final[tuple[RebuiltTile, ...]] = ()


class RebuiltTree:
    """``R``: a compact range of the leaves so far plus the partial tile of each level."""

    def __init__(self, hasher: LogHasher) -> None:
        self.hasher = hasher
        self.range = CompactRange(hasher)
        self._levels: list[list[bytes]] = [[]]  # the partial tile of each level
        self._level_index: list[int] = [0]  # the index of each level's partial tile

    @property
    def size(self) -> int:
        return self.range.size

    def append(self, leaf: bytes) -> Sequence[RebuiltTile]:
        """Add one leaf; returns the upper-level tiles it completed, lowest level first."""
        self.range.append(leaf)
        buf0 = self._levels[0]
        buf0.append(leaf)
        if len(buf0) < TILE_WIDTH:
            # The common case, once per leaf: no tile completed, nothing allocated.
            return _NONE
        hashes = list(buf0)
        buf0.clear()
        self._level_index[0] += 1
        completed: list[RebuiltTile] = []
        self._push(1, subtree_root(self.hasher, hashes), completed)
        return completed

    def _push(self, level: int, node: bytes, completed: list[RebuiltTile]) -> None:
        if level == len(self._levels):
            self._levels.append([])
            self._level_index.append(0)
        buf = self._levels[level]
        buf.append(node)
        if len(buf) == TILE_WIDTH:
            tile = TileID(level, self._level_index[level])
            hashes = list(buf)
            buf.clear()
            self._level_index[level] += 1
            completed.append((tile, hashes))
            self._push(level + 1, subtree_root(self.hasher, hashes), completed)

    def partial_upper_tiles(self) -> list[RebuiltTile]:
        """The right edge: each upper level's partial tile (never hashed into a parent)."""
        return [
            (TileID(level, self._level_index[level]), list(buf))
            for level, buf in enumerate(self._levels)
            if level > 0 and buf
        ]
