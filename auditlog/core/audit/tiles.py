"""The stored account ``T``: asking for stored tiles and holding them against the rebuilt ones.

The auditor cannot read tiles itself (it is pure), and memory must not grow with the log, so
tiles of levels above 0 are asked for only when something needs them: a rebuilt upper tile has
completed and must be compared, or a level-0 discrepancy waits for the stored parent that
decides it. The edge answers :meth:`StoredTiles.wanted`, and a stored tile is dropped as soon
as nothing waits on it. Differences go to :class:`~auditlog.core.audit.discrepancies.Discrepancies`.
"""

from __future__ import annotations

from collections.abc import Mapping

from auditlog.core.audit.discrepancies import Discrepancies, Discrepancy, Position
from auditlog.core.audit.findings import Findings
from auditlog.core.compact import subtree_root
from auditlog.core.errors import TileError
from auditlog.core.hashing import HASH_SIZE, LogHasher
from auditlog.core.tiles import TILE_HEIGHT, TILE_WIDTH, TileID, split_hashes

__all__ = ["StoredTiles", "stored_hashes"]


def stored_hashes(
    findings: Findings, tile: TileID, data: bytes | None, width: int, *, report_missing: bool
) -> list[bytes] | None:
    """The hashes of a stored tile that should hold ``width``, or None if there are none to
    compare; a missing (when ``report_missing``), unreadable or too narrow tile is a finding."""
    if width == 0:
        return None
    first = tile.index << (TILE_HEIGHT * (tile.level + 1))
    if data is None:
        if report_missing:
            findings.add(
                "missing-tile", first, None, f"tile {tile.level}/{tile.index} is not stored"
            )
        return None
    try:
        hashes = split_hashes(data)
    except TileError as exc:
        findings.add("tile-mismatch", first, None, f"tile {tile.level}/{tile.index}: {exc}")
        return None
    if len(hashes) < width:
        findings.add(
            "missing-tile",
            first,
            None,
            f"tile {tile.level}/{tile.index} holds {len(hashes)} hashes, the log needs {width}",
        )
    return hashes


def _parent_id(tile: TileID) -> TileID:
    return TileID(tile.level + 1, tile.index >> TILE_HEIGHT)


class StoredTiles:
    """The stored tiles of levels above 0 that the audit waits for, and what waits on them."""

    def __init__(self, hasher: LogHasher, findings: Findings, verdicts: Discrepancies) -> None:
        self.hasher = hasher
        self.findings = findings
        self.verdicts = verdicts
        self._need: set[TileID] = set()
        self._stored: dict[TileID, bytes | None] = {}  # fetched higher-level tiles, pruned
        self._await_compare: dict[TileID, list[bytes]] = {}  # rebuilt tiles, by the stored one
        self._await_parent: dict[TileID, Discrepancy] = {}  # level-0 ones, by their parent

    def wanted(self) -> list[TileID]:
        """The stored tiles to fetch next, in order."""
        return sorted(self._need)

    def compare_later(self, tile: TileID, rebuilt: list[bytes]) -> None:
        """Compare the rebuilt upper-level ``tile`` with the stored one once it is fetched."""
        self._await_compare[tile] = rebuilt
        self._need.add(tile)

    def add(self, tiles: Mapping[TileID, bytes | None]) -> None:
        """Fetched tiles (None: not stored): do what waited on them, then forget them."""
        for tile, data in tiles.items():
            self._need.discard(tile)
            self._stored[tile] = data
        for tile in [t for t in self._await_compare if t in self._stored]:
            self._compare_upper(tile, self._await_compare.pop(tile))
        for tile in [t for t in self._await_parent if _parent_id(t) in self._stored]:
            self._decide(self._await_parent.pop(tile))
        waiting = {_parent_id(t) for t in self._await_parent} | set(self._await_compare)
        for tile in [t for t in self._stored if t not in waiting]:
            del self._stored[tile]

    def _compare_upper(self, tile: TileID, rebuilt: list[bytes]) -> None:
        stored = stored_hashes(
            self.findings, tile, self._stored.get(tile), len(rebuilt), report_missing=True
        )
        if stored is None:
            return
        positions = [
            Position(pos, node, stored[pos], None)
            for pos, node in enumerate(rebuilt[: len(stored)])
            if node != stored[pos]
        ]
        if positions:
            self.verdicts.judge_by_entries(Discrepancy(tile, rebuilt, positions))

    def judge_leaf_tile(self, disc: Discrepancy, *, full: bool) -> None:
        """Decide a level-0 discrepancy by its stored parent, fetching the parent if need be.

        A partial tile is never hashed into a parent, so it is judged by the signed root.
        """
        if not full:
            self.verdicts.judge_by_root(disc)
            return
        self._await_parent[disc.tile] = disc
        parent = _parent_id(disc.tile)
        if parent in self._stored:
            self._decide(self._await_parent.pop(disc.tile))
        else:
            self._need.add(parent)

    def _decide(self, disc: Discrepancy) -> None:
        parent = _parent_id(disc.tile)
        data = self._stored.get(parent)
        pos = disc.tile.index & (TILE_WIDTH - 1)
        end = (pos + 1) * HASH_SIZE
        if data is None or len(data) < end:
            # No stored parent to judge by: fall back to the signed root, like the right edge.
            self.verdicts.judge_by_root(disc)
            return
        self.verdicts.resolve(
            disc,
            tile_damaged=subtree_root(self.hasher, disc.rebuilt) == data[end - HASH_SIZE : end],
        )

    def give_up_on_parents(self) -> None:
        """The end: level-0 discrepancies still without a parent are judged by the signed root."""
        for disc in self._await_parent.values():
            self.verdicts.judge_by_root(disc)
        self._await_parent.clear()
