"""Naming the damage where the rebuilt tree ``R`` and the stored tiles ``T`` differ.

A difference alone does not say which side is wrong. A level-0 difference is decided one level
up: if the rebuilt tile's root is what the stored parent holds (or, for the right edge, if ``R``
reproduces the signed root), the entries are authentic and the stored tile is damaged;
otherwise the entry is, and it is named ``reordered`` when it is the entry sealed at another
index, ``leaf-mismatch`` when not. An upper-level difference is the stored hash's own damage
unless an entry beneath it is already named (then it merely follows from that entry).
:mod:`auditlog.core.audit.tiles` decides which verdict applies when; this module delivers them.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from auditlog.core.audit.findings import Findings, hex_or_none
from auditlog.core.tiles import TILE_HEIGHT, TileID

__all__ = ["Discrepancies", "Discrepancy", "Position"]


@dataclass(slots=True)
class Position:
    """A leaf (level 0) or node where the rebuilt tree and a stored tile differ."""

    pos: int
    rebuilt: bytes
    stored: bytes | None
    name: bytes | None  # the event hash of the entry at this index, when known


@dataclass(slots=True)
class Discrepancy:
    """A rebuilt tile and the positions where the stored one differs from it."""

    tile: TileID
    rebuilt: list[bytes]
    positions: list[Position]


def _first_leaf(tile: TileID, pos: int) -> int:
    """The first leaf index the hash at ``pos`` of ``tile`` covers."""
    return ((tile.index << TILE_HEIGHT) + pos) << (TILE_HEIGHT * tile.level)


class Discrepancies:
    """The discrepancies of one log, from found to named.

    Those that cannot be judged while the entries stream by wait here: the right edge and
    the tiles without a stored parent (judged by the signed root), and the upper tiles (judged by
    the entry damage beneath, known only at the end).
    """

    def __init__(self, findings: Findings) -> None:
        self.findings = findings
        self._edge: list[Discrepancy] = []  # decided at the end, against the signed root
        self._upper: list[Discrepancy] = []  # decided at the end, by the entries beneath
        self._entry_damage: list[tuple[int, Position]] = []  # (index, position) leaf mismatches
        self._sealed_at: dict[bytes, int] = {}  # stored leaf -> index, for the mismatched ones

    def judge_by_root(self, disc: Discrepancy) -> None:
        """Decide ``disc`` at the end, by whether the rebuilt tree reproduces the signed root."""
        self._edge.append(disc)

    def judge_by_entries(self, disc: Discrepancy) -> None:
        """Decide the upper-level ``disc`` at the end, by the entry damage beneath it."""
        self._upper.append(disc)

    def resolve(self, disc: Discrepancy, *, tile_damaged: bool) -> None:
        """Name a level-0 discrepancy as entry or tile damage; upper ones only as tile damage."""
        tile = disc.tile
        span = 1 << (TILE_HEIGHT * tile.level)
        for p in disc.positions:
            first = _first_leaf(tile, p.pos)
            if tile_damaged:
                covers = f"leaf {first}" if span == 1 else f"leaves {first}..{first + span - 1}"
                self.findings.add(
                    "tile-mismatch",
                    first,
                    p.stored,
                    f"tile {tile.level}/{tile.index} position {p.pos} ({covers}) holds "
                    f"{hex_or_none(p.stored)}, the entries give {p.rebuilt.hex()}",
                )
            elif tile.level == 0:
                # Upper-level differences follow from these; naming the entries is the point.
                # They are named at the end, once every sealed leaf a moved entry may match
                # has been seen.
                self._entry_damage.append((first, p))
                if p.stored is not None:
                    self._sealed_at[p.stored] = first
                self.findings.damage_at(first)

    def settle(self, *, authentic: bool) -> None:
        """The end: decide what waited, then name the entry damage. ``authentic``: does the
        rebuilt tree reproduce the signed root (at the largest signed size it reached)?"""
        for disc in self._edge:
            self.resolve(disc, tile_damaged=authentic)
        self._edge.clear()
        self._report_upper()
        self._report_entry_damage()

    def _report_upper(self) -> None:
        # A node above entry damage must differ from the stored one; any other difference is
        # the stored hash's own. (When an entry and a tile hash above it are both damaged, the
        # entry is named and the hash is not: one finding per subtree is enough to fail.)
        damaged = sorted(index for index, _ in self._entry_damage)
        for disc in self._upper:
            span = 1 << (TILE_HEIGHT * disc.tile.level)
            alone = []
            for p in disc.positions:
                first = _first_leaf(disc.tile, p.pos)
                at = bisect.bisect_left(damaged, first)
                if at == len(damaged) or damaged[at] >= first + span:
                    alone.append(p)
            if alone:
                self.resolve(Discrepancy(disc.tile, disc.rebuilt, alone), tile_damaged=True)
        self._upper.clear()

    def _report_entry_damage(self) -> None:
        for index, p in self._entry_damage:
            moved = self._sealed_at.get(p.rebuilt)
            if moved is not None and moved != index:
                self.findings.add(
                    "reordered",
                    index,
                    p.name,
                    f"the entry at index {index} is the one sealed at index {moved}",
                )
            else:
                self.findings.add(
                    "leaf-mismatch",
                    index,
                    p.name,
                    f"leaf {p.rebuilt.hex()} is not the sealed leaf {hex_or_none(p.stored)}",
                )
