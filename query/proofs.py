"""Proofs and roots for the query service, built from stored tiles through bounded caches.

Tiles only grow by appending and a full tile never changes, so a cached tile that is at least
as wide as a proof needs is as good as the stored one: a proof for tree size ``s`` reads only
prefixes that existed at ``s``. Proofs are therefore built against a log head (size, checkpoint)
read once, from tiles that may have grown since, and stay correct while the sealer writes.

Bounded LRU caches per process: tile contents (keyed by log and tile; a hit must be wide
enough, else the tile is read again); per log, perfect-subtree hashes above tile height, which
never change once they exist; the upper interior levels of full level-0 tiles, so that a
proof's siblings inside its leaf's own tile are read rather than rehashed; and, per log and tree
size, the part of an inclusion proof above the full tiles around a leaf, which every leaf of the
same aligned block shares.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg
from prometheus_client import Counter

from auditlog.core import pangea_proof
from auditlog.core.compact import fold_roots
from auditlog.core.errors import MalformedProof, TileError
from auditlog.core.hashing import HASH_SIZE, LogHasher, get_hasher
from auditlog.core.proof import (
    Node,
    Range,
    consistency_proof,
    descend,
    inclusion_ranges,
    node_hash,
    range_nodes,
    root_from_tiles,
    root_tiles,
)
from auditlog.core.proof import consistency_tiles as native_consistency_tiles
from auditlog.core.tiles import TILE_HEIGHT, TILE_WIDTH, TileID
from auditlog.pg.db import fetch_tiles

TILE_READS = Counter("auditlog_query_tile_reads_total", "Tiles read", ["source"])
_TILES_FROM_CACHE = TILE_READS.labels("cache")
_TILES_FROM_DATABASE = TILE_READS.labels("database")

# Interior levels kept per full tile: heights INTERIOR_LOW .. TILE_HEIGHT-1 above the tile's own
# (32 + 16 + 8 + 4 + 2 = 62 hashes, 1,984 bytes, a quarter of the tile itself). Below that a
# proof rehashes at most 1 + 3 hashes per tile; keeping heights 1 and 2 as well would cost
# 6 KiB more per tile to save those four.
INTERIOR_LOW = 3
_INTERIOR_OFFSET = {
    h: sum(TILE_WIDTH >> j for j in range(INTERIOR_LOW, h))
    for h in range(INTERIOR_LOW, TILE_HEIGHT)
}
_FULL_TILE = TILE_WIDTH * HASH_SIZE
# Upper proof paths cached per process (a few hundred bytes each).
UPPER_PATHS = 4096

K = TypeVar("K")
V = TypeVar("V")


class LRU(MutableMapping[K, V], Generic[K, V]):
    """A mapping that forgets its least recently used entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        value = self._data.get(key)
        if value is None:
            return default
        self._data.move_to_end(key)
        return value

    def __getitem__(self, key: K) -> V:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        if self._limit <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._limit:
            self._data.popitem(last=False)

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def tile_interior(hasher: LogHasher, data: bytes) -> bytes:
    """Node hashes INTERIOR_LOW .. 7 levels above a full tile's own, lowest level first.

    The whole tile is hashed once (255 hashes, what rehashing one proof's siblings inside a
    level-0 tile costs anyway); a full tile never changes, so neither do these.
    """
    level = [data[i : i + HASH_SIZE] for i in range(0, _FULL_TILE, HASH_SIZE)]
    kept: list[bytes] = []
    for height in range(1, TILE_HEIGHT):
        level = hasher.hash_level(level)
        if height >= INTERIOR_LOW:
            kept.extend(level)
    return b"".join(kept)


def needed_width(level: int, index: int, size: int) -> int:
    """How many hashes of tile ``(level, index)`` exist in the tree of ``size`` (at most 256)."""
    hashes_at_level = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, hashes_at_level - index * TILE_WIDTH))


@dataclass(frozen=True, slots=True)
class LogHead:
    """A log as of its latest signed checkpoint; proofs are built against this size."""

    log_id: str
    origin: str
    hash_scheme: str
    size: int
    root: bytes
    checkpoint: str

    @property
    def hasher(self) -> LogHasher:
        return get_hasher(self.hash_scheme)


async def load_head(conn: asyncpg.Pool | asyncpg.Connection, log_id: str) -> LogHead | None:
    row = await conn.fetchrow(
        "SELECT log_id, origin, hash_scheme, size, root, checkpoint FROM logs"
        " WHERE log_id = $1 AND checkpoint IS NOT NULL",
        log_id,
    )
    return head_from_row(row) if row is not None else None


def head_from_row(row: asyncpg.Record) -> LogHead:
    return LogHead(
        str(row["log_id"]),
        str(row["origin"]),
        str(row["hash_scheme"]),
        int(row["size"]),
        bytes(row["root"]),
        str(row["checkpoint"]),
    )


TileKey = tuple[int, int]  # (level, index): a TileID without its per-object validation cost


@dataclass(frozen=True, slots=True)
class _InclusionPlan:
    index: int
    levels: int  # bottom tile levels whose proof hashes come 8 at a time from one full tile
    # Above those, the remaining proof hashes: known (from the cache of upper paths), or to be
    # computed from the subtrees each of them folds, and then cached under upper_key.
    upper_key: tuple[str, int, int, int]
    upper_known: tuple[bytes, ...] | None
    upper: list[list[Node]]
    wanted: set[TileKey]


def _upper_ranges(index: int, size: int, block: int) -> list[Range]:
    """The inclusion ranges of ``index`` wider than ``block``, the aligned power-of-two run of
    leaves around it that lies wholly inside the tree (RFC 9162 PATH, stopped at that node)."""
    return descend(index, size, block)[0]


def _node_tile_key(node: Node) -> TileKey:
    height, index = node
    level, sub = divmod(height, TILE_HEIGHT)
    return level, (index << sub) >> TILE_HEIGHT


class ProofBuilder:
    """Reads tiles through the caches and assembles proofs with the pure core."""

    def __init__(self, pool: asyncpg.Pool, *, tile_limit: int, node_limit: int) -> None:
        self._pool = pool
        self._tiles: LRU[tuple[str, int, int], bytes] = LRU(tile_limit)
        # As many entries as tiles, a quarter of their size each: interiors of full tiles.
        self._interiors: LRU[tuple[str, int, int], bytes] = LRU(tile_limit)
        self._nodes: dict[str, LRU[Node, bytes]] = {}
        self._node_limit = node_limit
        # The upper part of an inclusion proof (above the full tiles around the leaf) depends
        # only on the tree size and on which aligned block of 256^levels leaves holds the leaf
        # (every split above that width falls on a multiple of it), so all the leaves of a block
        # share it: at 10M leaves, 153 blocks of 65,536.
        self._uppers: LRU[tuple[str, int, int, int], tuple[bytes, ...]] = LRU(UPPER_PATHS)

    def nodes(self, log_id: str) -> MutableMapping[Node, bytes]:
        cache = self._nodes.get(log_id)
        if cache is None:
            cache = self._nodes[log_id] = LRU(self._node_limit)
        return cache

    async def tiles(self, log_id: str, wanted: Sequence[TileID], size: int) -> dict[TileID, bytes]:
        """The contents of ``wanted`` tiles, each at least as wide as tree ``size`` needs."""
        found = await self._tile_data(log_id, [(t.level, t.index) for t in wanted], size)
        return {TileID(level, index): data for (level, index), data in found.items()}

    async def _tile_data(
        self, log_id: str, wanted: Iterable[TileKey], size: int
    ) -> dict[TileKey, bytes]:
        out: dict[TileKey, bytes] = {}
        missing: list[TileKey] = []
        cached = self._tiles.get
        for level, index in wanted:
            data = cached((log_id, level, index))
            if data is not None and len(data) >= needed_width(level, index, size) * HASH_SIZE:
                out[level, index] = data
            else:
                missing.append((level, index))
        _TILES_FROM_CACHE.inc(len(out))
        if missing:
            _TILES_FROM_DATABASE.inc(len(missing))
            fetched = await fetch_tiles(self._pool, log_id, [TileID(*key) for key in missing])
            for tile, data in fetched.items():
                self._tiles[(log_id, tile.level, tile.index)] = data
                out[tile.level, tile.index] = data
        return out

    def _path_hashes(
        self, head: LogHead, plan: Sequence[Sequence[Node]], tiles: Mapping[TileKey, bytes]
    ) -> list[bytes]:
        """The hash of each range of a proof, given the perfect subtrees each range folds."""
        hasher, log_id = head.hasher, head.log_id
        out: list[bytes] = []
        for nodes in plan:
            hashes = [self._node(log_id, hasher, node, tiles) for node in nodes]
            out.append(hashes[0] if len(hashes) == 1 else fold_roots(hasher, hashes))
        return out

    def _node(
        self, log_id: str, hasher: LogHasher, node: Node, tiles: Mapping[TileKey, bytes]
    ) -> bytes:
        """One perfect subtree's hash: read from its tile, the tile's interior, or rehashed."""
        height, index = node
        level, sub = divmod(height, TILE_HEIGHT)
        first = index << sub  # the node's first hash at its tile's level
        tile_index = first >> TILE_HEIGHT
        data = tiles.get((level, tile_index))
        at = (first & (TILE_WIDTH - 1)) * HASH_SIZE
        if data is not None and sub == 0 and len(data) >= at + HASH_SIZE:
            return data[at : at + HASH_SIZE]
        if data is not None and sub and len(data) >= _FULL_TILE:
            if sub < INTERIOR_LOW:
                end = at + (HASH_SIZE << sub)
                hashes = [data[i : i + HASH_SIZE] for i in range(at, end, HASH_SIZE)]
                while len(hashes) > 1:  # 1 or 3 hashes
                    hashes = hasher.hash_level(hashes)
                return hashes[0]
            key = (log_id, level, tile_index)
            interior = self._interiors.get(key)
            if interior is None:
                interior = self._interiors[key] = tile_interior(hasher, data)
            at = (_INTERIOR_OFFSET[sub] + (index & ((TILE_WIDTH >> sub) - 1))) * HASH_SIZE
            return interior[at : at + HASH_SIZE]
        # A partial tile: the right edge of the tree, which every proof at this size shares.
        # Its perfect subtrees never change once they exist, so they are memoized per log.
        # (A missing or too narrow tile ends here too, and node_hash reports it.)
        present = {} if data is None else {TileID(level, tile_index): data}
        return node_hash(hasher, node, present, self.nodes(log_id))

    def _plan(self, path: Sequence[Range]) -> tuple[list[list[Node]], set[TileKey]]:
        plan = [range_nodes(lo, hi) for lo, hi in path]
        return plan, {_node_tile_key(node) for nodes in plan for node in nodes}

    def _inclusion_plan(self, log_id: str, index: int, size: int) -> _InclusionPlan:
        if not 0 <= index < size:
            raise MalformedProof(f"index {index} is not below tree size {size}")
        # Bottom up, each tile level whose whole tile around the leaf's path lies inside the
        # tree gives exactly the next 8 proof hashes, from that one full tile.
        levels = 0
        while ((index >> (TILE_HEIGHT * (levels + 1))) + 1) << (TILE_HEIGHT * (levels + 1)) <= size:
            levels += 1
        key = (log_id, size, levels, index >> (TILE_HEIGHT * levels))
        known = self._uppers.get(key)
        if known is None:
            upper, wanted = self._plan(_upper_ranges(index, size, 1 << (TILE_HEIGHT * levels)))
        else:
            upper, wanted = [], set()
        wanted.update((level, index >> (TILE_HEIGHT * (level + 1))) for level in range(levels))
        return _InclusionPlan(index, levels, key, known, upper, wanted)

    def _inclusion_hashes(
        self, head: LogHead, plan: _InclusionPlan, tiles: Mapping[TileKey, bytes]
    ) -> list[bytes]:
        hasher, log_id = head.hasher, head.log_id
        out: list[bytes] = []
        for level in range(plan.levels):
            position = plan.index >> (TILE_HEIGHT * level)
            tile_index = position >> TILE_HEIGHT
            out += self._tile_siblings(log_id, hasher, level, tile_index, position, tiles)
        upper = plan.upper_known
        if upper is None:
            upper = self._uppers[plan.upper_key] = tuple(self._path_hashes(head, plan.upper, tiles))
        out += upper
        return out

    def _tile_siblings(
        self,
        log_id: str,
        hasher: LogHasher,
        level: int,
        tile_index: int,
        position: int,
        tiles: Mapping[TileKey, bytes],
    ) -> list[bytes]:
        """The 8 siblings, heights 0..7 inside one full tile, of the path through ``position``."""
        data = tiles.get((level, tile_index))
        if data is None or len(data) < _FULL_TILE:
            have = "missing" if data is None else f"{len(data) // HASH_SIZE} hashes wide"
            raise TileError(f"tile {level}/{tile_index} is {have}, needs {TILE_WIDTH}")
        p = position & (TILE_WIDTH - 1)
        at = (p ^ 1) * HASH_SIZE
        out = [data[at : at + HASH_SIZE]]
        at = (((p >> 1) ^ 1) << 1) * HASH_SIZE
        out.append(hasher.hash_children(data[at : at + HASH_SIZE], data[at + HASH_SIZE : at + 64]))
        at = (((p >> 2) ^ 1) << 2) * HASH_SIZE
        four = hasher.hash_level([data[i : i + HASH_SIZE] for i in range(at, at + 128, HASH_SIZE)])
        out.append(hasher.hash_children(four[0], four[1]))
        key = (log_id, level, tile_index)
        interior = self._interiors.get(key)
        if interior is None:
            interior = self._interiors[key] = tile_interior(hasher, data)
        for height in range(INTERIOR_LOW, TILE_HEIGHT):
            at = (_INTERIOR_OFFSET[height] + ((p >> height) ^ 1)) * HASH_SIZE
            out.append(interior[at : at + HASH_SIZE])
        return out

    async def inclusion(self, head: LogHead, index: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` at the head's size, in its hash scheme."""
        plan = self._inclusion_plan(head.log_id, index, head.size)
        tiles = await self._tile_data(head.log_id, plan.wanted, head.size)
        return self._inclusion_hashes(head, plan, tiles)

    async def consistency(self, head: LogHead, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof between two sizes no larger than the head's."""
        wanted = native_consistency_tiles(size1, size2)
        tiles = await self.tiles(head.log_id, wanted, size2)
        return consistency_proof(head.hasher, size1, size2, tiles, self.nodes(head.log_id))

    async def root(self, head: LogHead, size: int) -> bytes:
        """The root of the tree of ``size`` leaves (at most the head's size)."""
        if size == head.size:
            return head.root
        tiles = await self.tiles(head.log_id, root_tiles(size), size)
        return root_from_tiles(head.hasher, size, tiles)

    async def pangea_memberships(self, head: LogHead, indexes: Sequence[int]) -> list[str]:
        """Pangea membership proof strings for leaves of a ``pangea-sha256`` log."""
        plans = [self._inclusion_plan(head.log_id, index, head.size) for index in indexes]
        wanted = set().union(*(plan.wanted for plan in plans))
        tiles = await self._tile_data(head.log_id, wanted, head.size)
        out = []
        for index, plan in zip(indexes, plans, strict=True):
            path = inclusion_ranges(index, head.size)
            hashes = self._inclusion_hashes(head, plan, tiles)
            # Pangea's side letter: "l" when the sibling lies left of the leaf.
            out.append(
                ",".join(
                    f"{'l' if hi <= index else 'r'}:{h.hex()}"
                    for (_, hi), h in zip(path, hashes, strict=True)
                )
            )
        return out

    async def pangea_consistency(self, head: LogHead, size1: int, size2: int) -> list[str] | None:
        """Pangea consistency proof items between two sizes, None when there is nothing to prove."""
        wanted = pangea_proof.consistency_tiles(size1, size2)
        tiles = await self.tiles(head.log_id, wanted, size2)
        return pangea_proof.consistency_proof(size1, size2, tiles, self.nodes(head.log_id))
