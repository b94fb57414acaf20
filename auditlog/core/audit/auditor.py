"""The auditor of one log: the push protocol the edges follow, composed of the parts.

The caller pushes one 256-entry *chunk* at a time (:meth:`LogAuditor.add_chunk`: rows, the
stored level-0 tile and the entry bundle of those indexes), answers
:meth:`LogAuditor.wanted_tiles` with :meth:`LogAuditor.add_tiles` (stored tiles of higher
levels, asked for only as the rebuilt ones complete), passes any rows beyond the log's size to
:meth:`LogAuditor.add_extra_rows`, and ends with :meth:`LogAuditor.end_of_entries`, the last
wanted tiles, and :meth:`LogAuditor.finish`. Memory stays bounded whatever the log's size: one
partial tile per level, a compact range, and the discrepancies still waiting for their parent.

Each concern lives in its own module; this class only wires them and keeps the order in which
they run, which is also the order findings are found in (it breaks ties in the report):

* :mod:`~auditlog.core.audit.checkpoints`: the signed checkpoints ``C``, opened first;
* :mod:`~auditlog.core.audit.entries`: the leaf of each index, from rows, bundles or tiles;
* :mod:`~auditlog.core.audit.tree`: the tree ``R`` rebuilt from those leaves;
* :mod:`~auditlog.core.audit.tiles`: the stored tiles ``T``, fetched and compared with ``R``;
* :mod:`~auditlog.core.audit.discrepancies`: which of ``R`` and ``T`` a difference damns;
* :mod:`~auditlog.core.audit.findings`: the findings, counted and capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from auditlog.core.audit.checkpoints import SignedCheckpoints
from auditlog.core.audit.discrepancies import Discrepancies, Discrepancy
from auditlog.core.audit.entries import EntryReader, rows_by_index
from auditlog.core.audit.findings import DEFAULT_MAX_FINDINGS, AuditedLog, Findings
from auditlog.core.audit.statements import LogStatements, StoredStatements
from auditlog.core.audit.stored import StoredCheckpoint, StoredEvent, StoredHead
from auditlog.core.audit.tiles import StoredTiles, stored_hashes
from auditlog.core.audit.tree import RebuiltTree
from auditlog.core.hashing import LogHasher
from auditlog.core.note import NoteVerifier
from auditlog.core.tiles import TILE_WIDTH, TileID

__all__ = ["LogAuditor"]


class LogAuditor:
    """Audits one log; see the module docstring for the protocol the edge follows."""

    def __init__(
        self,
        head: StoredHead,
        hasher: LogHasher,
        verifiers: Sequence[NoteVerifier],
        checkpoints: Iterable[StoredCheckpoint],
        *,
        entries_from: str = "rows",
        max_findings: int = DEFAULT_MAX_FINDINGS,
        statements: StoredStatements | None = None,
    ) -> None:
        if entries_from not in ("rows", "bundles", "tiles"):
            raise ValueError(f"entries_from must be rows, bundles or tiles, not {entries_from!r}")
        self.head = head
        self.log = head.log_id
        self.hasher = hasher
        self.verifiers = list(verifiers)
        self.entries_from = entries_from
        self.max_findings = max_findings
        self._findings = Findings(self.log, max_findings)
        # The checkpoints come first: only what they sign says how large the log must be.
        self._checkpoints = SignedCheckpoints(
            head, self.verifiers, list(checkpoints), self._findings
        )
        self.expected_size = max([head.size, *self._checkpoints.signed])
        # Then what the log says it pruned and erased: they account for absent entries.
        self._statements = LogStatements(
            head.origin, hasher, self.verifiers, statements or StoredStatements(), self._findings
        )
        self._entries = EntryReader(
            hasher, entries_from, self.expected_size, self._findings, self._statements
        )
        self._tree = RebuiltTree(hasher)
        self._checkpoints.observe(self._tree.range)  # a log is born signed: size 0, empty root
        self._verdicts = Discrepancies(self._findings)
        self._tiles = StoredTiles(hasher, self._findings, self._verdicts)
        self._next_chunk = 0
        self.entries = 0

    def add_chunk(
        self,
        chunk: int,
        rows: Sequence[StoredEvent],
        tile: bytes | None,
        bundle: bytes | None,
    ) -> None:
        """Push the entries ``[256*chunk, 256*chunk+256)``: rows in that range, stored tile
        ``0/chunk`` and entry bundle ``chunk`` (None when not stored). Chunks come in order,
        every chunk below :attr:`expected_size` exactly once.
        """
        if chunk != self._next_chunk:
            raise ValueError(f"chunk {chunk} out of order, expected {self._next_chunk}")
        self._next_chunk += 1
        start = chunk * TILE_WIDTH
        width = max(0, min(TILE_WIDTH, self.expected_size - start))
        # In tiles mode the level-0 tile is the only account of the leaves: a missing one is
        # not named missing-tile, it shows as the signed root not reproducing (zero leaves
        # stand in for it).
        stored = stored_hashes(
            self._findings,
            TileID(0, chunk),
            tile,
            width,
            report_missing=self.entries_from != "tiles",
        )
        entries = self._entries.bundle_entries(chunk, bundle, width)
        by_index = rows_by_index(rows)
        rebuilt, positions = self._entries.chunk_leaves(start, width, by_index, stored, entries)
        stated = self._statements.sizes
        for leaf in rebuilt:
            for upper, hashes in self._tree.append(leaf):
                self._tiles.compare_later(upper, hashes)
            self._checkpoints.observe(self._tree.range)
            if self._tree.size in stated:
                self._statements.observe(self._tree.range)
        self.entries += width
        if entries is not None and len(entries) > width:
            self._findings.add(
                "bundle-mismatch",
                start + width,
                None,
                f"bundle {chunk} holds {len(entries)} entries, the log has {width} there",
            )
        self.add_extra_rows([r for group in by_index.values() for r in group])
        if positions:
            disc = Discrepancy(TileID(0, chunk), rebuilt, positions)
            self._tiles.judge_leaf_tile(disc, full=width == TILE_WIDTH)

    def add_extra_rows(self, rows: Iterable[StoredEvent]) -> None:
        """Rows whose index is outside ``[0, expected_size)``: each one is damage."""
        self._entries.extra_rows(rows)

    def wanted_tiles(self) -> list[TileID]:
        """Stored tiles the audit needs before it can go on; fetch and :meth:`add_tiles`."""
        return self._tiles.wanted()

    def add_tiles(self, tiles: Mapping[TileID, bytes | None]) -> None:
        """Stored tiles (None: not stored), as asked for by :meth:`wanted_tiles`."""
        self._tiles.add(tiles)

    def end_of_entries(self) -> None:
        """No more chunks: queue the right edge (the partial upper tiles) for comparison.

        Partial tiles are never hashed into a parent, so their differences are judged against
        the signed root instead.
        """
        while self._next_chunk * TILE_WIDTH < self.expected_size:
            self.add_chunk(self._next_chunk, [], None, None)
        self._entries.flush_missing()
        for tile, hashes in self._tree.partial_upper_tiles():
            self._tiles.compare_later(tile, hashes)

    def finish(self) -> AuditedLog:
        """The findings; call after :meth:`end_of_entries` once no tiles are wanted."""
        if wanted := self._tiles.wanted():
            raise ValueError(f"tiles still wanted: {wanted[:4]}")
        self._tiles.give_up_on_parents()
        self._verdicts.settle(authentic=self._checkpoints.authentic(self._tree.size))
        self._checkpoints.report()
        return AuditedLog(
            self.log,
            self.head.origin,
            self.expected_size,
            self.entries,
            len(self._checkpoints.signed),
            self._findings.in_order(),
            self._findings.suppressed,
            self._checkpoints.head_note,
            self._statements.below,
            tuple(self._statements.erased),
            self._statements.latest_pruned,
        )
