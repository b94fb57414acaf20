"""Proofs and roots for the query service, built from stored tiles through bounded caches.

Tiles only grow by appending and a full tile never changes, so a cached tile that is at least
as wide as a proof needs is as good as the stored one: a proof for tree size ``s`` reads only
prefixes that existed at ``s``. Proofs are therefore built against a log head (size, checkpoint)
read once, from tiles that may have grown since, and stay correct while the sealer writes.

Two bounded LRU caches per process: tile contents (keyed by log and tile; a hit must be wide
enough, else the tile is read again) and, per log, perfect-subtree hashes, which never change
once they exist.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg
from prometheus_client import Counter

from auditlog import pangea_proof
from auditlog.db import fetch_tiles
from auditlog.hashing import HASH_SIZE, LogHasher, get_hasher
from auditlog.proof import (
    Node,
    Range,
    consistency_proof,
    inclusion_ranges,
    inclusion_tiles,
    range_hash,
    root_from_tiles,
    root_tiles,
)
from auditlog.proof import consistency_tiles as native_consistency_tiles
from auditlog.tiles import TILE_HEIGHT, TILE_WIDTH, TileID

TILE_READS = Counter("auditlog_query_tile_reads_total", "Tiles read", ["source"])

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


def needed_width(tile: TileID, size: int) -> int:
    """How many hashes of ``tile`` exist in the tree of ``size`` (capped at a full tile)."""
    hashes_at_level = size >> (TILE_HEIGHT * tile.level)
    return max(0, min(TILE_WIDTH, hashes_at_level - tile.index * TILE_WIDTH))


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


class ProofBuilder:
    """Reads tiles through the caches and assembles proofs with the pure core."""

    def __init__(self, pool: asyncpg.Pool, *, tile_limit: int, node_limit: int) -> None:
        self._pool = pool
        self._tiles: LRU[tuple[str, TileID], bytes] = LRU(tile_limit)
        self._nodes: dict[str, LRU[Node, bytes]] = {}
        self._node_limit = node_limit

    def nodes(self, log_id: str) -> MutableMapping[Node, bytes]:
        cache = self._nodes.get(log_id)
        if cache is None:
            cache = self._nodes[log_id] = LRU(self._node_limit)
        return cache

    async def tiles(self, log_id: str, wanted: Sequence[TileID], size: int) -> dict[TileID, bytes]:
        """The contents of ``wanted`` tiles, each at least as wide as tree ``size`` needs."""
        out: dict[TileID, bytes] = {}
        missing: list[TileID] = []
        for tile in wanted:
            data = self._tiles.get((log_id, tile))
            if data is not None and len(data) >= needed_width(tile, size) * HASH_SIZE:
                out[tile] = data
            else:
                missing.append(tile)
        TILE_READS.labels("cache").inc(len(out))
        if missing:
            TILE_READS.labels("database").inc(len(missing))
            for tile, data in (await fetch_tiles(self._pool, log_id, missing)).items():
                self._tiles[(log_id, tile)] = data
                out[tile] = data
        return out

    def _path_hashes(
        self, head: LogHead, path: Sequence[Range], tiles: Mapping[TileID, bytes]
    ) -> list[bytes]:
        # Siblings of at most one tile's width sit inside the leaf's own level-0 tile: hashing
        # them directly (255 hashes at most) is cheaper than caching them, and there are as
        # many such nodes as leaves, so caching them would only evict the nodes worth keeping:
        # those inside higher tiles, shared by every proof.
        nodes = self.nodes(head.log_id)
        return [
            range_hash(head.hasher, lo, hi, tiles, nodes if hi - lo > TILE_WIDTH else None)
            for lo, hi in path
        ]

    async def inclusion(self, head: LogHead, index: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` at the head's size, in its hash scheme."""
        tiles = await self.tiles(head.log_id, inclusion_tiles(index, head.size), head.size)
        return self._path_hashes(head, inclusion_ranges(index, head.size), tiles)

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
        wanted = sorted({t for i in indexes for t in pangea_proof.membership_tiles(i, head.size)})
        tiles = await self.tiles(head.log_id, wanted, head.size)
        out = []
        for index in indexes:
            path = inclusion_ranges(index, head.size)
            hashes = self._path_hashes(head, path, tiles)
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
